//! The ids a run's trace is exported with (OpenTelemetry), derived rather
//! than drawn, so that every process that touches a run names its spans
//! alike: the server exporting spans from the log, and the worker writing an
//! attempt's log lines (weft's log and OTLP log records carry the span id of
//! the attempt that wrote them), before and after a takeover.

use sha2::{Digest as _, Sha256};
use weft_core::{RunId, Timestamp};

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The trace id of a run started without a `traceparent`: its id hashed.
pub fn run_trace_id(run: &RunId) -> [u8; 16] {
    let hash = digest(&[b"weft trace", run.as_str().as_bytes()]);
    let mut id = [0; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

/// The id of a span of `run`'s trace: its kind (`run`, `node`, `attempt`),
/// address, attempt (0 for others) and `start` hashed — for an attempt the
/// microseconds of its `step-started` (a redelivered or resumed attempt is
/// another span), for a node where in the log it began.
pub fn span_id(run: &RunId, kind: &str, address: &str, attempt: u32, start: u64) -> [u8; 8] {
    let hash = digest(&[
        b"weft span",
        run.as_str().as_bytes(),
        kind.as_bytes(),
        address.as_bytes(),
        &attempt.to_le_bytes(),
        &start.to_le_bytes(),
    ]);
    let mut id = [0; 8];
    id.copy_from_slice(&hash[..8]);
    id
}

/// The span id of an attempt that started at `started_at` (its
/// `step-started`'s time).
pub fn attempt_span_id(run: &RunId, address: &str, attempt: u32, started_at: Timestamp) -> [u8; 8] {
    span_id(run, "attempt", address, attempt, started_at.0)
}

/// Lower-case hex, as OpenTelemetry writes ids.
pub fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_part() {
        let run = RunId::new("r").unwrap();
        let other = RunId::new("s").unwrap();
        let a = attempt_span_id(&run, "a", 1, Timestamp(5));
        assert_eq!(a, attempt_span_id(&run, "a", 1, Timestamp(5)));
        for b in [
            attempt_span_id(&other, "a", 1, Timestamp(5)),
            attempt_span_id(&run, "b", 1, Timestamp(5)),
            attempt_span_id(&run, "a", 2, Timestamp(5)),
            attempt_span_id(&run, "a", 1, Timestamp(6)),
            span_id(&run, "node", "a", 1, 5),
        ] {
            assert_ne!(a, b);
        }
        assert_ne!(run_trace_id(&run), run_trace_id(&other));
        assert_eq!(hex_id(&[0, 0xab, 0x1f]), "00ab1f");
    }
}
