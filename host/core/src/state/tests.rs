//! Unit tests of the state machine (see `tests/all` for end-to-end runs).
