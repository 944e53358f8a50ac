//! What the store derives from the log: run listings.

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
