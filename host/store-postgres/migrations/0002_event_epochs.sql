-- The lease epoch each event was appended under (the fencing token the
-- append was checked against): an audit trail, so that a test (or an
-- operator) can check that a run's events never go back to an older epoch,
-- that is, that no event was appended under a lease already taken over.
-- Events stored before this migration have 0.
ALTER TABLE events ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
