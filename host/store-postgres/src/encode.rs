//! Events as rows: the encoding both SQL stores share
//! ([`weft_core::rows`]).

pub(crate) use weft_core::rows::{EncodedEvent, encode};
