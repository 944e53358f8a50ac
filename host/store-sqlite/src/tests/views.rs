//! What the store derives from the log: run listings and step results.

use super::*;

#[test]
fn runs_are_listed_newest_first_with_the_status_their_events_imply() {
    let store = SqliteStore::open_in_memory().unwrap();
    let suspend = |at| Event::RunSuspended {
        paths: vec![path("s")],
        at: Timestamp(at),
    };
    let resume = |at| Event::RunResumed {
        path: path("s"),
        payload: json!(null),
        at: Timestamp(at),
    };
    let complete = |at| Event::RunCompleted {
        output: json!(null),
        at: Timestamp(at),
    };

    store
        .create_run(&meta("started"), &[started("started", 10)], &owner(), None)
        .unwrap();
    store
        .create_run(
            &meta("suspended"),
            &[started("suspended", 20)],
            &owner(),
            None,
        )
        .unwrap();
    store
        .create_run(
            &meta("resumed"),
            &[started("resumed", 30), suspend(31)],
            &owner(),
            None,
        )
        .unwrap();
    store
        .create_run(
            &meta("completed"),
            &[started("completed", 40)],
            &owner(),
            None,
        )
        .unwrap();
    store
        .create_run(
            &meta("created-late"),
            &[started("created-late", 5)],
            &owner(),
            None,
        )
        .unwrap();
    let (sus, res, com) = (run_id("suspended"), run_id("resumed"), run_id("completed"));
    store
        .append_batch(&[
            append(&sus, 1, &[step_started("s", 1, 21), suspend(22)]),
            append(&res, 2, &[resume(32), custom("s", 33)]),
            append(&com, 1, &[step_started("s", 1, 41), complete(42)]),
        ])
        .unwrap();

    let listed = |status| -> Vec<(String, RunStatus)> {
        store
            .list_runs(status)
            .unwrap()
            .into_iter()
            .map(|r| (r.meta.run_id.to_string(), r.status))
            .collect()
    };
    let own = |id: &str, s| (id.to_owned(), s);
    assert_eq!(
        listed(None),
        [
            own("completed", RunStatus::Success),
            own("resumed", RunStatus::Running),
            own("suspended", RunStatus::Suspended),
            own("started", RunStatus::Running),
            own("created-late", RunStatus::Running),
        ]
    );
    assert_eq!(
        listed(Some(RunStatus::Running)),
        [
            own("resumed", RunStatus::Running),
            own("started", RunStatus::Running),
            own("created-late", RunStatus::Running),
        ]
    );
    assert_eq!(
        listed(Some(RunStatus::Suspended)),
        [own("suspended", RunStatus::Suspended)]
    );
    assert_eq!(
        listed(Some(RunStatus::Success)),
        [own("completed", RunStatus::Success)]
    );
    assert!(listed(Some(RunStatus::Canceled)).is_empty());

    let resumed = store.list_runs(Some(RunStatus::Running)).unwrap().remove(0);
    assert_eq!(resumed.meta, meta("resumed"));
    assert_eq!(resumed.events, 4);
    assert_eq!(
        (resumed.created_at, resumed.updated_at),
        (Timestamp(30), Timestamp(33))
    );
}

#[test]
fn step_results_follow_the_step_events() {
    let store = SqliteStore::open_in_memory().unwrap();
    let r = run_id("r");
    store
        .create_run(&meta("r"), &[started("r", 1)], &owner(), None)
        .unwrap();
    let mut seq = 1;
    let mut push = |events: &[Event]| {
        store.append_batch(&[append(&r, seq, events)]).unwrap();
        seq += events.len() as u64;
        store.step_results(&r).unwrap()
    };
    let row = |step: &str, status, attempt, started_at, ended_at: Option<u64>| StepResult {
        path: path(step),
        step: StepId::new(step).unwrap(),
        status,
        attempt,
        output: None,
        error: None,
        started_at: Timestamp(started_at),
        ended_at: ended_at.map(Timestamp),
    };

    assert_eq!(
        push(&[step_started("a", 1, 10)]),
        [row("a", StepStatus::Running, 1, 10, None)]
    );
    // A retryable failure: the store cannot know the retry policy and records `failed`.
    let failed = push(&[Event::StepFailed {
        path: path("a"),
        error: error("slow"),
        at: Timestamp(11),
    }]);
    assert_eq!(
        failed,
        [StepResult {
            error: Some(error("slow")),
            ..row("a", StepStatus::Failed, 1, 10, Some(11))
        }]
    );
    // The next attempt clears the error and the end time.
    assert_eq!(
        push(&[step_started("a", 2, 12)]),
        [row("a", StepStatus::Running, 2, 12, None)]
    );
    let output = json!({"total": 3});
    let done = push(&[
        custom("a", 13),
        Event::StepCompleted {
            path: path("a"),
            output: output.clone().into(),
            state: None,
            at: Timestamp(14),
        },
    ]);
    let a_done = StepResult {
        output: Some(output),
        ..row("a", StepStatus::Success, 2, 12, Some(14))
    };
    assert_eq!(done, std::slice::from_ref(&a_done));

    let suspended = push(&[
        step_started("b", 1, 20),
        Event::StepSuspended {
            path: path("b"),
            payload: json!({}),
            labels: vec![],
            state: None,
            at: Timestamp(21),
        },
        Event::RunSuspended {
            paths: vec![path("b")],
            at: Timestamp(22),
        },
    ]);
    assert_eq!(
        suspended,
        [
            a_done.clone(),
            row("b", StepStatus::Suspended, 1, 20, Some(21))
        ]
    );
    let resumed = push(&[Event::RunResumed {
        path: path("b"),
        payload: json!(1),
        at: Timestamp(30),
    }]);
    assert_eq!(resumed[1], row("b", StepStatus::Resumed, 1, 20, Some(21)));
    let bailed = push(&[
        step_started("b", 1, 31),
        Event::StepBailed {
            path: path("b"),
            output: json!("early"),
            state: None,
            at: Timestamp(32),
        },
    ]);
    assert_eq!(
        bailed,
        [
            a_done,
            StepResult {
                output: Some(json!("early")),
                ..row("b", StepStatus::Bailed, 1, 31, Some(32))
            }
        ]
    );

    // A step event for a path that never started changes nothing (the store
    // does not validate transitions; the state machine does before appending).
    let stray = push(&[Event::StepCompleted {
        path: path("c"),
        output: json!(0).into(),
        state: None,
        at: Timestamp(40),
    }]);
    assert_eq!(stray.len(), 2);
}

#[test]
fn step_status_names_are_their_serde_names() {
    for status in [
        StepStatus::Running,
        StepStatus::Retrying,
        StepStatus::Success,
        StepStatus::Failed,
        StepStatus::Suspended,
        StepStatus::Resumed,
        StepStatus::Bailed,
    ] {
        assert_eq!(json!(crate::projection::status_name(status)), json!(status));
    }
}
