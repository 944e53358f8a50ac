//! What both runtimes do with a run in the store: load and replay it, and
//! say what a store failure means for a request.

use weft_core::{Event, EventStore, RunId, RunState, RunStatus, StoreError};

use crate::error::RuntimeError;
use crate::runtime::Registered;

/// A stored run rebuilt on `workflow`: its state and its events.
///
/// # Errors
/// [`RuntimeError::NotFound`], [`RuntimeError::WrongWorkflow`] when the run
/// belongs to another workflow, [`RuntimeError::Replay`] when its events do
/// not replay; store failures.
pub(crate) fn load(
    store: &dyn EventStore,
    workflow: &Registered,
    run: &RunId,
) -> Result<(RunState, Vec<Event>), RuntimeError> {
    let (meta, events) = store.load(run).map_err(|e| error(run, e))?;
    if meta.workflow_id != *workflow.workflow.id() {
        return Err(RuntimeError::WrongWorkflow {
            run: run.to_string(),
            saved: meta.workflow_id.to_string(),
            given: workflow.workflow.id().to_string(),
        });
    }
    let state =
        RunState::replay(std::sync::Arc::clone(&workflow.workflow), &events).map_err(|reason| {
            RuntimeError::Replay {
                run: run.to_string(),
                workflow: meta.workflow_id.to_string(),
                reason,
            }
        })?;
    Ok((state, events))
}

/// A reloaded run that another process changed under its driver: fine to
/// report when it has settled (finished, suspended, canceled); an error
/// when the other process is still driving it.
///
/// # Errors
/// [`RuntimeError::DrivenElsewhere`] when the stored run is still running.
pub(crate) fn settled(state: &RunState, run: &RunId) -> Result<(), RuntimeError> {
    if state.status() == RunStatus::Running {
        return Err(RuntimeError::DrivenElsewhere {
            run: run.to_string(),
        });
    }
    Ok(())
}

/// Takes the lease of `run` for `owner`: a free run (no lease, released or
/// expired), or with `takeover` more; and for a recovery (`From` is asked
/// for by passing `recovering`), also a run whose holder is provably gone
/// ([`crate::owner_is_gone`]).
///
/// # Errors
/// [`RuntimeError::Leased`] when a live owner holds it; store failures.
pub(crate) fn acquire(
    store: &dyn EventStore,
    run: &RunId,
    owner: &weft_core::Owner,
    takeover: weft_core::Takeover<'_>,
    recovering: bool,
) -> Result<weft_core::Lease, RuntimeError> {
    match store.acquire(run, owner, takeover) {
        Err(StoreError::Leased { owner: holder, .. })
            if recovering && crate::lease::owner_is_gone(&holder) =>
        {
            tracing::info!(run = %run, "the run's owner {holder} is gone (its process no longer exists): taking the run over");
            store
                .acquire(run, owner, weft_core::Takeover::From(&holder))
                .map_err(|e| error(run, e))
        }
        other => other.map_err(|e| error(run, e)),
    }
}

/// Cancels a stored run, from whichever process drives it: the cancel is
/// decided on the run as stored, then appended with the lease taken by
/// force, in one transaction ([`EventStore::acquire_and_append`]), so the
/// driver is fenced out at the moment the run is canceled. When another
/// process appended first, it is decided again on what that process did.
/// A driver that keeps appending faster than the run can be read (a busy
/// run, many times in a row) is fenced out first, so that the cancel is
/// never starved; then, for the moment between the two transactions, it may
/// find its lease gone before it finds the run canceled.
/// Returns the canceled run's state and events, and how many of them were
/// stored before the cancel.
///
/// # Errors
/// [`RuntimeError::Resume`] when the run has finished (nothing is
/// written); as [`load`]; store failures.
pub(crate) fn cancel(
    store: &dyn EventStore,
    workflow: &Registered,
    run: &RunId,
    owner: &weft_core::Owner,
    reason: Option<&str>,
    clock: &dyn weft_core::Clock,
) -> Result<(RunState, Vec<Event>, usize), RuntimeError> {
    /// Optimistic tries before the driver is fenced out first.
    const TRIES: usize = 3;
    let mut tried = 0;
    let mut fenced = None;
    let outcome = loop {
        if tried == TRIES {
            match store.acquire(run, owner, weft_core::Takeover::Force) {
                Ok(lease) => fenced = Some(lease),
                Err(e) => break Err(error(run, e)),
            }
        }
        let decided = load(store, workflow, run).and_then(|(mut state, events)| {
            let canceled = state.cancel(reason.map(str::to_owned), clock.now())?;
            state.apply(&canceled)?;
            Ok((state, events, canceled))
        });
        let (state, mut events, canceled) = match decided {
            Ok(decided) => decided,
            Err(e) => break Err(e),
        };
        let before = events.len();
        let appended = store.acquire_and_append(
            run,
            owner,
            weft_core::Takeover::Force,
            before as u64,
            std::slice::from_ref(&canceled),
            state.next_wake(),
        );
        match appended {
            Ok(_) => {
                events.push(canceled);
                return Ok((state, events, before));
            }
            Err(StoreError::Conflict { .. }) => tried += 1,
            Err(e) => break Err(error(run, e)),
        }
    };
    // Refused (the run had finished meanwhile) or failed after fencing the
    // driver out: the lease taken for it is given up.
    if let Some(lease) = fenced {
        let _ = store.release(&lease);
    }
    outcome
}

/// Waits before asking again for a run another process holds while it
/// claims the run for a request like this one (concurrent resumes): a
/// moment, at most 20 ms, never past the lease's end (`remaining_ms`).
pub(crate) fn look_again(remaining_ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(remaining_ms.clamp(1, 20)));
}

/// The runtime error a store failure about `run` means to the caller.
pub(crate) fn error(run: &RunId, error: StoreError) -> RuntimeError {
    let run = run.to_string();
    match error {
        StoreError::Exists { .. } => RuntimeError::Exists { run },
        StoreError::NotFound { .. } => RuntimeError::NotFound { run },
        StoreError::Conflict { .. } => RuntimeError::Conflict { run },
        StoreError::Fenced { .. } => RuntimeError::LeaseLost { run },
        StoreError::Leased {
            owner,
            remaining_ms,
            ..
        } => RuntimeError::Leased {
            run,
            owner,
            remaining_ms,
        },
        reason @ StoreError::Backend(_) => RuntimeError::Store { run, reason },
    }
}
