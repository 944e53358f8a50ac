//! Both runtimes record runs in one store with the same rules: a run id is
//! taken once, and a resume or cancel is decided on the run as stored, so
//! that concurrent requests from several processes (here: several runtimes
//! over one store) apply exactly once and every caller is told the truth.

use std::sync::mpsc;
use std::sync::{Barrier, Mutex};

use serde_json::json;
use weft_core::{
    Event, EventStore, FailureKind, ResumeError, ResumeTarget, RunId, RunStatus, StepOutcome,
    StepReport, StepStatus,
};

use super::hooked::{Call, Hooked};
use super::{Fixture, Kind, add, approval, ok};
use crate::RuntimeError;

fn a_run_id_is_taken_once(kind: Kind) {
    let (rt, _) = Fixture::new().step("gate", approval).build(kind);
    let id = RunId::new("mine").unwrap();
    let first = rt.start_as(&id, json!(1)).unwrap();
    assert_eq!(first.status, RunStatus::Suspended);
    let before = rt.store().load(&id).unwrap().1;
    // Again, from this runtime and from another one over the same store.
    for driver in [&rt, &rt.twin()] {
        let err = driver.start_as(&id, json!(2)).unwrap_err();
        assert!(matches!(err, RuntimeError::Exists { .. }), "{err}");
    }
    assert_eq!(
        rt.store().load(&id).unwrap().1,
        before,
        "the first run is intact"
    );
    let done = rt
        .resume_run(&id, &ResumeTarget::Only, json!("yes"))
        .unwrap();
    assert_eq!(done.status, RunStatus::Success);
}

fn concurrent_resumes_of_one_step_resume_it_once(kind: Kind) {
    for round in 0..5 {
        let (rt, runner) = Fixture::new()
            .step("gate", approval)
            .step("after", add(0))
            .build(kind);
        let run = rt.start(json!(round));
        let twins: Vec<_> = (0..4).map(|_| rt.twin()).collect();
        let barrier = Barrier::new(twins.len());
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = twins
                .iter()
                .map(|twin| {
                    s.spawn(|| {
                        barrier.wait();
                        twin.resume_run(&run.id, &ResumeTarget::Only, json!("yes"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        assert_eq!(won[0].status, RunStatus::Success);
        for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(
                matches!(lost, RuntimeError::Resume(ResumeError::NotSuspended { .. })),
                "round {round}: {lost}"
            );
        }
        let calls = runner.calls.lock().unwrap().clone();
        assert_eq!(calls, ["gate#1", "gate#1", "after#1"], "round {round}");
        let events = rt.store().load(&run.id).unwrap().1;
        let resumed = events
            .iter()
            .filter(|e| matches!(e, Event::RunResumed { .. }))
            .count();
        assert_eq!(resumed, 1, "round {round}");
    }
}

fn a_cancel_racing_a_resume_leaves_one_truth(kind: Kind) {
    for round in 0..10 {
        let (rt, _) = Fixture::new()
            .step("gate", approval)
            .step("after", add(0))
            .build(kind);
        let run = rt.start(json!(round));
        let (resumer, canceler) = (rt.twin(), rt.twin());
        let barrier = Barrier::new(2);
        let (resumed, canceled) = std::thread::scope(|s| {
            let r = s.spawn(|| {
                barrier.wait();
                resumer.resume_run(&run.id, &ResumeTarget::Only, json!("yes"))
            });
            let c = s.spawn(|| {
                barrier.wait();
                canceler.cancel_run(&run.id, Some("race".into()))
            });
            (r.join().unwrap(), c.join().unwrap())
        });
        let stored = super::replay(&rt, &run.id);
        // Whatever each caller was told is what the store says.
        if let Ok(result) = &resumed {
            assert_eq!(result.status, stored.status, "round {round}");
        }
        match &canceled {
            Ok(result) => {
                assert_eq!(result.status, RunStatus::Canceled, "round {round}");
                assert_eq!(stored.status, RunStatus::Canceled, "round {round}");
            }
            Err(e) => {
                assert!(
                    matches!(e, RuntimeError::Resume(ResumeError::NotCancelable { .. })),
                    "round {round}: {e}"
                );
                assert_eq!(stored.status, RunStatus::Success, "round {round}");
            }
        }
        assert!(resumed.is_ok() || canceled.is_ok(), "round {round}");
        assert!(
            stored.steps.iter().all(|s| s.status != StepStatus::Running),
            "round {round}: {:?}",
            stored.steps
        );
    }
}

fn a_run_canceled_while_its_step_runs_reports_the_cancellation(kind: Kind) {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let (rt, runner) = Fixture::new()
        .step("slow", move |_, _| {
            started_tx.lock().unwrap().send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
            ok(StepOutcome::Completed(json!("late")))
        })
        .step("after", add(0))
        .build(kind);
    let id = RunId::new("driven").unwrap();
    let canceler = rt.twin();
    let (driven, canceled) = std::thread::scope(|s| {
        let driver = s.spawn(|| rt.start_as(&id, json!(1)));
        started_rx.recv().unwrap();
        let canceled = canceler.cancel_run(&id, Some("stop".into()));
        release_tx.send(()).unwrap();
        (driver.join().unwrap(), canceled)
    });
    let canceled = canceled.unwrap();
    assert_eq!(canceled.status, RunStatus::Canceled);
    // The process that drove the run reports the cancellation, not a conflict.
    let driven = driven.unwrap();
    assert_eq!(driven.status, RunStatus::Canceled);
    // The evented runtime commits before it dispatches, so nothing runs after
    // the cancel. The default runtime learns of it only when it records the
    // run: a step may run meanwhile, and is not recorded.
    let calls = runner.calls.lock().unwrap().clone();
    match kind {
        Kind::Evented => assert_eq!(calls, ["slow#1"]),
        Kind::Default => assert_eq!(calls, ["slow#1", "after#1"]),
    }
    let stored = super::replay(&rt, &id);
    assert_eq!(stored, driven);
    assert!(
        stored.steps.iter().all(|s| s.status != StepStatus::Running),
        "{:?}",
        stored.steps
    );
    let events = rt.store().load(&id).unwrap().1;
    assert!(matches!(events.last(), Some(Event::RunCanceled { .. })));
}

fn a_suspended_step_of_a_canceled_run_is_recorded_as_canceled(kind: Kind) {
    let (rt, _) = Fixture::new().step("gate", approval).build(kind);
    let run = rt.start(json!(1));
    let result = rt.cancel_run(&run.id, None).unwrap();
    assert_eq!(result.status, RunStatus::Canceled);
    assert_eq!(result.steps[0].status, StepStatus::Canceled);
    assert!(result.steps[0].labels.is_empty());
}

fn a_panicking_runner_fails_the_step_with_a_host_error(kind: Kind) {
    let (rt, _) = Fixture::new()
        .step("bug", |_, _| -> StepReport { panic!("host bug") })
        .build(kind);
    let result = rt.start(json!(1)).result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap().error;
    assert_eq!(error.kind, FailureKind::Host);
    assert!(
        error.message.contains("panicked: host bug"),
        "{}",
        error.message
    );
}

fn an_input_too_large_is_refused_before_anything_is_stored(kind: Kind) {
    let (rt, runner) = Fixture::new().step("a", add(1)).build(kind);
    let id = RunId::new("big").unwrap();
    let input = json!("x".repeat(1 << 20));
    let err = rt.start_as(&id, input).unwrap_err();
    assert!(
        err.to_string()
            .contains("workflow `wf`: input is larger than 1048576 bytes of JSON"),
        "{err}"
    );
    assert!(
        weft_core::RunIndex::list_runs(rt.store(), None)
            .unwrap()
            .is_empty()
    );
    assert!(runner.calls.lock().unwrap().is_empty());
}

on_both_runtimes!(
    a_run_id_is_taken_once,
    concurrent_resumes_of_one_step_resume_it_once,
    a_cancel_racing_a_resume_leaves_one_truth,
    a_run_canceled_while_its_step_runs_reports_the_cancellation,
    a_suspended_step_of_a_canceled_run_is_recorded_as_canceled,
    a_panicking_runner_fails_the_step_with_a_host_error,
    an_input_too_large_is_refused_before_anything_is_stored,
);

#[test]
fn a_default_run_lost_before_its_end_was_recorded_is_recovered_from_its_claim() {
    use std::sync::Arc;
    // Recovered by either runtime.
    for recovering in super::Kind::ALL {
        let (driver, runner) = Fixture::new()
            .step("a", add(1))
            .step("b", add(10))
            .build(Kind::Default);
        let (reg, store) = (&driver.registered, &driver.store);
        let clock = Arc::new(weft_core::ManualClock::new(weft_core::Timestamp(7)));
        // Appends fail: as if the default runtime's process died before it
        // recorded the run's end.
        let no_appends = Hooked::new(store.clone(), |call| match call {
            Call::AppendBatch | Call::AcquireAndAppend => {
                Err(weft_core::StoreError::Backend("disk gone".into()))
            }
            _ => Ok(()),
        });
        let failing = crate::DefaultRuntime::new(Arc::new(no_appends), clock.clone());
        let id = RunId::new("lost").unwrap();
        let err = failing
            .start(reg, id.clone(), json!(1), &mut crate::NoObserver)
            .unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        // The store holds the run at its claim: running, nothing after run-started.
        let (_, events) = store.load(&id).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            weft_core::RunIndex::list_runs(&**store, Some(RunStatus::Running))
                .unwrap()
                .len(),
            1
        );
        // The failed runtime let go of it (its process would be gone).
        drop(failing);
        // Recovery drives it from there; its steps run again.
        let other = super::Driver::new(
            recovering,
            reg.clone(),
            store.clone(),
            clock,
            crate::EventedOptions::default(),
        );
        let result = other.recover_run(&id).unwrap();
        assert_eq!(result.status, RunStatus::Success, "{recovering}");
        assert_eq!(result.output, Some(json!(12)));
        assert_eq!(
            *runner.calls.lock().unwrap(),
            ["a#1", "b#1", "a#1", "b#1"],
            "{recovering}"
        );
    }
}

/// A cancel decided on the stored run retries when the log moved on, and
/// after a few tries fences the driver out first, so a busy run is never
/// left uncancelable.
#[test]
fn a_cancel_of_a_busy_run_fences_its_driver_out_after_a_few_tries() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    for (conflicts, forced) in [(1, 0), (2, 0), (3, 1), (10, 1)] {
        let (driver, _) = Fixture::new().step("gate", approval).build(Kind::Default);
        let handle = driver.start(json!(1));
        assert_eq!(handle.result().status, RunStatus::Suspended);
        // The next `conflicts` forced appends find the log moved on (a
        // driver in another process appending faster than the run can be
        // read); separate forced takeovers are counted.
        let left = Arc::new(AtomicUsize::new(conflicts));
        let taken = Arc::new(AtomicUsize::new(0));
        let busy = {
            let (left, taken) = (left.clone(), taken.clone());
            Hooked::new(driver.store.clone(), move |call| match call {
                Call::AcquireAndAppend
                    if left
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                        .is_ok() =>
                {
                    Err(weft_core::StoreError::Conflict {
                        run: "busy".into(),
                        expected: 0,
                        actual: 1,
                    })
                }
                Call::Acquire(weft_core::Takeover::Force) => {
                    taken.fetch_add(1, SeqCst);
                    Ok(())
                }
                _ => Ok(()),
            })
        };
        let owner = weft_core::Owner {
            id: "canceler".into(),
            ttl: std::time::Duration::from_secs(60),
        };
        let clock = weft_core::ManualClock::new(weft_core::Timestamp(9));
        let (state, events, before) = crate::stored::cancel(
            &busy,
            &driver.registered,
            &handle.id,
            &owner,
            Some("stop"),
            &clock,
        )
        .unwrap();
        assert_eq!(state.status(), RunStatus::Canceled, "{conflicts} conflicts");
        assert_eq!(events.len(), before + 1);
        assert_eq!(taken.load(SeqCst), forced, "{conflicts} conflicts");
        assert_eq!(driver.store.load(&handle.id).unwrap().1, events);
        // Canceled again: refused, and the canceler holds nothing.
        left.store(conflicts, SeqCst);
        let refused =
            crate::stored::cancel(&busy, &driver.registered, &handle.id, &owner, None, &clock);
        assert!(
            matches!(refused, Err(RuntimeError::Resume(_))),
            "{conflicts} conflicts"
        );
        assert!(
            driver.store.renew(&owner).unwrap().is_empty(),
            "{conflicts} conflicts: the canceler kept a lease"
        );
    }
}

#[test]
fn an_evented_run_whose_commit_fails_is_let_go_for_recovery() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (driver, runner) = Fixture::new()
        .step("a", add(1))
        .step("b", add(10))
        .build(Kind::Evented);
    let (reg, store) = (&driver.registered, &driver.store);
    let clock = Arc::new(weft_core::ManualClock::new(weft_core::Timestamp(7)));
    // The first commit after the run's creation fails as a commit whose
    // connection was lost does (PostgreSQL: its outcome unknown).
    let appends = Arc::new(AtomicUsize::new(0));
    let failing_once = {
        let appends = appends.clone();
        Hooked::new(store.clone(), move |call| match call {
            Call::AppendBatch if appends.fetch_add(1, Ordering::SeqCst) == 0 => Err(
                weft_core::StoreError::Backend("the connection was lost while committing".into()),
            ),
            _ => Ok(()),
        })
    };
    let failing: Box<dyn crate::Runtime> = Box::new(crate::EventedRuntime::new(
        Arc::new(failing_once),
        clock.clone(),
        2,
    ));
    let id = RunId::new("unknown-commit").unwrap();
    let err = failing
        .call(
            super::start_request(reg, id.as_str(), json!(1)),
            &mut crate::NoObserver,
        )
        .unwrap_err();
    assert!(err.to_string().contains("lost while committing"), "{err}");
    // While the runtime lives (its keeper renewing what it holds), the run
    // is claimable: let go, not held forever.
    let claimable = store.claimable(weft_core::Timestamp(u64::MAX)).unwrap();
    assert!(claimable.iter().any(|c| c.run == id), "{claimable:?}");
    // A recovering runtime carries it on from the log.
    let other = super::Driver::new(
        Kind::Evented,
        reg.clone(),
        store.clone(),
        clock,
        crate::EventedOptions::default(),
    );
    let result = other.recover_run(&id).unwrap();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!(12)));
    drop(failing);
    assert!(runner.calls.lock().unwrap().contains(&"b#1".to_owned()));
}
