//! What `run` returned, turned into a [`StepOutcome`] or the guest's own
//! [`StepError`], within the step's [`Limits`].
//!
//! Guest data is bounded twice:
//!
//! 1. **While wasmtime copies it.** Lifting a `list<error-cause>` of a million
//!    entries, or a 50 MB `string`, allocates all of it on the host before
//!    any code of ours sees it; and a guest can make a million list entries
//!    point at the same bytes of its memory, so the guest's memory cap does
//!    not bound the copy. wasmtime's *hostcall fuel* does: it is charged for
//!    every string's bytes and every list's entries *before* they are
//!    allocated, and the copy fails once it runs out. Each attempt's store
//!    gets the [`hostcall_budget`] of its limits: the largest value that any
//!    of them allows, so a value that exhausts it is over some limit, and
//!    [`is_over_budget`] reports it as `payload-too-large`.
//! 2. **Once copied** (so never larger than that budget), here, part by
//!    part, with a message naming the limit: outputs and suspend payloads
//!    (`max-output-bytes`), resume labels (`max-labels`, `max-label-bytes`)
//!    and errors (`max-error-bytes`, `max-error-causes`), sizes first, JSON
//!    second.

use std::mem::size_of;

use serde_json::Value;
use weft_core::{ErrorCause, FailureKind, Limits, StepError, StepOutcome};

use crate::bindings::{self, Outcome};

/// The most bytes wasmtime may copy out of the guest in one value (the value
/// `run` returns, or the arguments of one host call), as it counts them: the
/// bytes of every string plus, for every list, its length times the host
/// size of an entry. It is the largest value the limits allow:
/// - an output or bail output: `max-output-bytes`;
/// - a suspension: its payload plus `max-labels` labels of `max-label-bytes`;
/// - an error: `max-error-bytes` of text plus `max-error-causes` causes;
/// - a `set-state`, `emit` or `log` call: `max-state-bytes`, `max-event-bytes`.
pub(crate) fn hostcall_budget(limits: &Limits) -> usize {
    let label = host_size::<String>().saturating_add(limits.max_label_bytes);
    let suspension = limits
        .max_output_bytes
        .saturating_add(u64::from(limits.max_labels).saturating_mul(label));
    let error = limits.max_error_bytes.saturating_add(
        u64::from(limits.max_error_causes).saturating_mul(host_size::<bindings::ErrorCause>()),
    );
    let largest = suspension
        .max(error)
        .max(limits.max_state_bytes)
        .max(limits.max_event_bytes);
    usize::try_from(largest).unwrap_or(usize::MAX)
}

fn host_size<T>() -> u64 {
    u64::try_from(size_of::<T>()).unwrap_or(u64::MAX)
}

/// Whether wasmtime stopped copying a value out of the guest because it
/// exhausted the [`hostcall_budget`]. wasmtime reports that with an error of
/// a private type, so this looks for its message; the sandbox tests of
/// oversized errors and labels fail if a wasmtime upgrade changes it.
pub(crate) fn is_over_budget(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// The failure for a value that exhausted the [`hostcall_budget`].
pub(crate) fn over_budget(limits: &Limits) -> StepError {
    StepError::host(
        FailureKind::PayloadTooLarge,
        format!(
            "the step passed the host more in one call than its limits allow (over {} bytes \
             or list entries): an output, a suspension, an error, a state or an event that \
             large, or a host call given that long a list (such as `wasi:io/poll.poll` over \
             that many pollables)",
            hostcall_budget(limits)
        ),
    )
}

/// The outcome `run` returned, checked against `limits`.
//
// `StepError` is large, but these build the report's own `Result<StepOutcome,
// StepError>`: boxing it only to unbox it again would buy nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn outcome_of(outcome: Outcome, limits: &Limits) -> Result<StepOutcome, StepError> {
    let max = limits.max_output_bytes;
    Ok(match outcome {
        Outcome::Completed(text) => {
            StepOutcome::Completed(payload(&text, max, "output", FailureKind::InvalidOutput)?)
        }
        Outcome::Bailed(text) => StepOutcome::Bailed(payload(
            &text,
            max,
            "bail output",
            FailureKind::InvalidOutput,
        )?),
        Outcome::Suspended(bindings::Suspension {
            payload: text,
            resume_labels,
        }) => {
            check_labels(&resume_labels, limits)?;
            let payload = payload(&text, max, "suspend payload", FailureKind::InvalidSuspend)?;
            StepOutcome::Suspended {
                payload,
                labels: resume_labels,
            }
        }
    })
}

/// Parses a JSON payload the guest returned, within `max` bytes.
#[allow(clippy::result_large_err)]
fn payload(text: &str, max: u64, what: &str, invalid: FailureKind) -> Result<Value, StepError> {
    if text.len() as u64 > max {
        return Err(too_large(format!(
            "the step's {what} is {} bytes, over the limit of {max} bytes",
            text.len()
        )));
    }
    serde_json::from_str(text).map_err(|error| {
        StepError::host(invalid, format!("the step's {what} is not JSON: {error}"))
    })
}

/// Checks the number and sizes of a suspension's resume labels.
#[allow(clippy::result_large_err)]
fn check_labels(labels: &[String], limits: &Limits) -> Result<(), StepError> {
    if labels.len() as u64 > u64::from(limits.max_labels) {
        return Err(too_large(format!(
            "the step suspended with {} resume labels, over the limit of {}",
            labels.len(),
            limits.max_labels
        )));
    }
    match labels
        .iter()
        .find(|label| label.len() as u64 > limits.max_label_bytes)
    {
        Some(label) => Err(too_large(format!(
            "the step suspended with a resume label of {} bytes, over the limit of {} bytes",
            label.len(),
            limits.max_label_bytes
        ))),
        None => Ok(()),
    }
}

/// The guest's own error, checked against `limits`, with its JSON details
/// parsed; a failure of another kind when it breaks a limit or its details
/// are not JSON.
pub(crate) fn step_error_of(error: bindings::StepError, limits: &Limits) -> StepError {
    if let Err(failure) = check_error_size(&error, limits) {
        return failure;
    }
    let bindings::StepError {
        code,
        message,
        details,
        retryable,
        causes,
    } = error;
    let invalid = |whose: &str, parse: serde_json::Error| {
        StepError::host(
            FailureKind::InvalidOutput,
            format!(
                "the step failed with error `{}`, but {whose} details are not JSON: {parse}",
                truncated(&code)
            ),
        )
    };
    let details = match details.as_deref().map(serde_json::from_str).transpose() {
        Ok(details) => details,
        Err(parse) => return invalid("its", parse),
    };
    let mut parsed = Vec::with_capacity(causes.len());
    for bindings::ErrorCause {
        code: cause,
        message,
        details,
    } in causes
    {
        match details.as_deref().map(serde_json::from_str).transpose() {
            Ok(details) => parsed.push(ErrorCause {
                code: cause,
                message,
                details,
            }),
            Err(parse) => return invalid(&format!("its cause `{}`'s", truncated(&cause)), parse),
        }
    }
    StepError {
        kind: FailureKind::Step,
        code,
        message,
        details,
        retryable,
        causes: parsed,
    }
}

/// Checks an error's number of causes and its size: its code, message and
/// details, plus those of every cause.
#[allow(clippy::result_large_err)]
fn check_error_size(error: &bindings::StepError, limits: &Limits) -> Result<(), StepError> {
    let code = truncated(&error.code);
    if error.causes.len() as u64 > u64::from(limits.max_error_causes) {
        return Err(too_large(format!(
            "the step failed with error `{code}` with {} causes, over the limit of {}",
            error.causes.len(),
            limits.max_error_causes
        )));
    }
    let text = |code: &str, message: &str, details: &Option<String>| {
        (code.len() as u64)
            .saturating_add(message.len() as u64)
            .saturating_add(details.as_ref().map_or(0, |details| details.len() as u64))
    };
    let size = error.causes.iter().fold(
        text(&error.code, &error.message, &error.details),
        |size, cause| size.saturating_add(text(&cause.code, &cause.message, &cause.details)),
    );
    if size > limits.max_error_bytes {
        return Err(too_large(format!(
            "the step failed with error `{code}` of {size} bytes (code, message, details and \
             causes), over the limit of {} bytes",
            limits.max_error_bytes
        )));
    }
    Ok(())
}

fn too_large(message: String) -> StepError {
    StepError::host(FailureKind::PayloadTooLarge, message)
}

/// At most 64 characters of a guest-chosen name, for error messages.
pub(crate) fn truncated(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cause(code: &str, message: &str) -> bindings::ErrorCause {
        bindings::ErrorCause {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    fn error(message: &str, causes: Vec<bindings::ErrorCause>) -> bindings::StepError {
        bindings::StepError {
            code: "card-declined".into(),
            message: message.into(),
            details: Some(r#"{"a":1}"#.into()),
            retryable: true,
            causes,
        }
    }

    #[test]
    fn step_errors_keep_the_guest_code_and_parse_details() {
        let limits = Limits::default();
        let error = step_error_of(error("no", vec![cause("issuer", "m")]), &limits);
        assert_eq!(error.kind, FailureKind::Step);
        assert_eq!(error.code, "card-declined");
        assert_eq!(error.details, Some(json!({"a": 1})));
        assert!(error.retryable);
        assert_eq!(error.causes[0].code, "issuer");

        let error = step_error_of(
            bindings::StepError {
                code: "x".into(),
                message: "m".into(),
                details: Some("{".into()),
                retryable: false,
                causes: Vec::new(),
            },
            &limits,
        );
        assert_eq!(error.kind, FailureKind::InvalidOutput);
    }

    #[test]
    fn an_error_counts_its_causes_and_every_text_in_it() {
        let limits = Limits {
            max_error_bytes: 40,
            max_error_causes: 2,
            ..Limits::default()
        };
        // 13 + 2 + 7 bytes, plus 2 × (5 + 4): exactly 40.
        let fits = || error("no", vec![cause("cause", "1234"), cause("cause", "1234")]);
        assert_eq!(step_error_of(fits(), &limits).kind, FailureKind::Step);

        let mut longer = fits();
        longer.causes[1].message.push('5');
        let failure = step_error_of(longer, &limits);
        assert_eq!(failure.kind, FailureKind::PayloadTooLarge);
        assert_eq!(
            failure.message,
            "the step failed with error `card-declined` of 41 bytes (code, message, details \
             and causes), over the limit of 40 bytes"
        );
        assert!(!failure.retryable);

        let mut more = fits();
        more.causes.push(cause("", ""));
        let failure = step_error_of(more, &limits);
        assert_eq!(failure.kind, FailureKind::PayloadTooLarge);
        assert!(
            failure.message.contains("3 causes, over the limit of 2"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn labels_are_counted_and_measured() {
        let limits = Limits {
            max_labels: 2,
            max_label_bytes: 4,
            ..Limits::default()
        };
        let suspend = |labels: &[&str]| {
            outcome_of(
                Outcome::Suspended(bindings::Suspension {
                    payload: "null".into(),
                    resume_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                }),
                &limits,
            )
        };
        assert!(suspend(&["a", "abcd"]).is_ok());
        let failure = suspend(&["a", "b", "c"]).unwrap_err();
        assert_eq!(failure.kind, FailureKind::PayloadTooLarge);
        assert!(
            failure.message.contains("3 resume labels"),
            "{}",
            failure.message
        );
        let failure = suspend(&["abcde"]).unwrap_err();
        assert_eq!(failure.kind, FailureKind::PayloadTooLarge);
        assert!(
            failure.message.contains("label of 5 bytes"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_budget_is_the_largest_value_the_limits_allow() {
        let limits = Limits {
            max_output_bytes: 1000,
            max_labels: 2,
            max_label_bytes: 10,
            max_error_bytes: 100,
            max_error_causes: 1,
            max_state_bytes: 10,
            max_event_bytes: 10,
            ..Limits::default()
        };
        let string = size_of::<String>() as usize;
        assert_eq!(hostcall_budget(&limits), 1000 + 2 * (string + 10));
        let limits = Limits {
            max_error_bytes: 5000,
            ..limits
        };
        let cause = size_of::<bindings::ErrorCause>();
        assert_eq!(hostcall_budget(&limits), 5000 + cause);
        let limits = Limits {
            max_state_bytes: 9000,
            ..limits
        };
        assert_eq!(hostcall_budget(&limits), 9000);
        let huge = Limits {
            max_output_bytes: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(hostcall_budget(&huge), usize::MAX);
    }

    #[test]
    fn names_in_messages_are_truncated() {
        assert_eq!(truncated("short"), "short");
        assert_eq!(truncated(&"é".repeat(100)).chars().count(), 64);
    }
}
