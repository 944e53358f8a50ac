//! Creating runs and appending to them.

use super::*;

#[test]
fn every_event_variant_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let events = every_variant("r1");
    let names: BTreeSet<_> = events.iter().map(Event::name).collect();
    assert_eq!(names.len(), 12, "every variant is covered: {names:?}");

    store
        .create_run(&meta("r1"), &events, &owner(), None)
        .unwrap();
    let (loaded_meta, loaded) = store.load(&run_id("r1")).unwrap();
    assert_eq!(loaded_meta, meta("r1"));
    assert_eq!(loaded, events);

    assert_eq!(store.events_after(&run_id("r1"), 0).unwrap(), events);
    assert_eq!(store.events_after(&run_id("r1"), 10).unwrap(), events[10..]);
    assert!(store.events_after(&run_id("r1"), 15).unwrap().is_empty());
    assert!(
        store
            .events_after(&run_id("r1"), u64::MAX)
            .unwrap()
            .is_empty()
    );

    // The stored columns match the events.
    let conn = store.lock();
    let (ty, at): (String, i64) = conn
        .query_row(
            "SELECT type, at FROM events WHERE run_id = 'r1' AND seq = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ty.as_str(), at), ("step-failed", 1_003));
    drop(conn);
    assert_sound(&store);
}

#[test]
fn unknown_runs_are_not_found() {
    let store = SqliteStore::open_in_memory().unwrap();
    let nobody = run_id("nobody");
    assert!(matches!(store.load(&nobody), Err(StoreError::NotFound { run }) if run == "nobody"));
    assert!(matches!(
        store.events_after(&nobody, 0),
        Err(StoreError::NotFound { .. })
    ));
    let events = [custom("a", 1)];
    assert!(matches!(
        store.append_batch(&[append(&nobody, 0, &events)]),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.list_runs(None).unwrap().is_empty());
}

#[test]
fn creating_a_run_twice_or_without_events_fails() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_run(&meta("r1"), &[started("r1", 5)], &owner(), None)
        .unwrap();
    let again = store.create_run(&meta("r1"), &[started("r1", 9)], &owner(), None);
    assert!(matches!(again, Err(StoreError::Exists { run }) if run == "r1"));
    assert_eq!(store.load(&run_id("r1")).unwrap().1, [started("r1", 5)]);

    let empty = store
        .create_run(&meta("r2"), &[], &owner(), None)
        .unwrap_err();
    assert!(empty.to_string().contains("r2"), "{empty}");
    assert!(matches!(
        store.load(&run_id("r2")),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn an_append_with_a_stale_expected_conflicts_and_writes_nothing() {
    let store = SqliteStore::open_in_memory().unwrap();
    let r1 = run_id("r1");
    store
        .create_run(
            &meta("r1"),
            &[started("r1", 1), step_started("a", 1, 2)],
            &owner(),
            None,
        )
        .unwrap();
    let more = [
        custom("a", 3),
        Event::RunCompleted {
            output: json!(1),
            at: Timestamp(4),
        },
    ];

    for stale in [0, 1, 3] {
        match store.append_batch(&[append(&r1, stale, &more)]) {
            Err(StoreError::Conflict {
                run,
                expected,
                actual,
            }) => {
                assert_eq!((run.as_str(), expected, actual), ("r1", stale, 2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(store.load(&r1).unwrap().1.len(), 2);
    let summary = &store.list_runs(None).unwrap()[0];
    assert_eq!((summary.events, summary.status), (2, RunStatus::Running));
    assert_eq!(summary.updated_at, Timestamp(2));

    store.append_batch(&[append(&r1, 2, &more)]).unwrap();
    let summary = &store.list_runs(None).unwrap()[0];
    assert_eq!((summary.events, summary.status), (4, RunStatus::Success));
    assert_eq!(
        (summary.created_at, summary.updated_at),
        (Timestamp(1), Timestamp(4))
    );
}

#[test]
fn a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let (a, b) = (run_id("a"), run_id("b"));
    store
        .create_run(&meta("a"), &[started("a", 1)], &owner(), None)
        .unwrap();
    store
        .create_run(&meta("b"), &[started("b", 2)], &owner(), None)
        .unwrap();
    let step = [step_started("s", 1, 10)];
    let done = [Event::StepCompleted {
        path: path("s"),
        output: json!(1).into(),
        state: None,
        measured: None,
        at: Timestamp(11),
    }];

    // The second append conflicts: the first, valid one is not written either.
    let err = store
        .append_batch(&[append(&a, 1, &step), append(&b, 7, &step)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { ref run, expected: 7, actual: 1 } if run == "b"));
    // Likewise when a later append names an unknown run.
    let ghost = run_id("ghost");
    let err = store
        .append_batch(&[append(&a, 1, &step), append(&ghost, 0, &step)])
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { ref run } if run == "ghost"));
    assert_eq!(store.load(&a).unwrap().1.len(), 1);

    // Two appends to one run chain within a batch; an empty append only checks.
    store
        .append_batch(&[
            append(&a, 1, &step),
            append(&b, 1, &[]),
            append(&a, 2, &done),
            append(&b, 1, &step),
        ])
        .unwrap();
    assert_eq!(
        store.load(&a).unwrap().1,
        [started("a", 1), step[0].clone(), done[0].clone()]
    );
    assert_eq!(
        store.load(&b).unwrap().1,
        [started("b", 2), step[0].clone()]
    );
    store.append_batch(&[]).unwrap();
    assert_sound(&store);
}

#[test]
fn two_handles_on_one_file_see_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (file_store(dir.path()), file_store(dir.path()));
    let r = run_id("r");
    one.create_run(&meta("r"), &[started("r", 1)], &owner(), None)
        .unwrap();
    assert!(matches!(
        two.create_run(&meta("r"), &[started("r", 1)], &owner(), None),
        Err(StoreError::Exists { .. })
    ));

    let first = [custom("a", 2)];
    let second = [custom("a", 3)];
    two.append_batch(&[append(&r, 1, &first)]).unwrap();
    let lost = one.append_batch(&[append(&r, 1, &second)]);
    assert!(
        matches!(
            lost,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{lost:?}"
    );
    assert_eq!(one.load(&r).unwrap().1, [started("r", 1), first[0].clone()]);
}

#[test]
fn racing_writers_on_one_file_exactly_one_wins() {
    const ROUNDS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        Arc::new(file_store(dir.path())),
        Arc::new(file_store(dir.path())),
    ];
    stores[0]
        .create_run(&meta("race"), &[started("race", 1)], &owner(), None)
        .unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(writer, store)| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let run = run_id("race");
                let mut wins = Vec::new();
                for round in 0..ROUNDS {
                    // Both writers have seen the log end at `expected`.
                    let expected = round + 1;
                    let events = [custom(&format!("w{writer}"), 100 + round)];
                    barrier.wait();
                    match store.append_batch(&[append(&run, expected, &events)]) {
                        Ok(()) => wins.push(round),
                        Err(StoreError::Conflict {
                            expected: e,
                            actual,
                            ..
                        }) => {
                            assert_eq!((e, actual), (expected, expected + 1));
                        }
                        Err(other) => panic!("writer {writer}, round {round}: {other}"),
                    }
                    // The round is over for both before the next one starts.
                    barrier.wait();
                }
                wins
            })
        })
        .collect();
    let wins: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut all: Vec<u64> = wins.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..ROUNDS).collect::<Vec<_>>(),
        "one winner per round: {wins:?}"
    );
    let (_, events) = stores[1].load(&run_id("race")).unwrap();
    assert_eq!(events.len() as u64, ROUNDS + 1);
    for (round, event) in events[1..].iter().enumerate() {
        assert_eq!(event.at(), Timestamp(100 + round as u64));
    }
    assert_sound(&stores[0]);
}

#[test]
fn changed_since_names_the_runs_with_newer_events_in_one_question() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    // 1,200 runs: more than one chunk of the query.
    let ids: Vec<RunId> = (0..1_200).map(|i| run_id(&format!("r{i}"))).collect();
    for id in &ids {
        store
            .create_run(
                &meta(id.as_str()),
                &[started(id.as_str(), 1)],
                &owner(),
                None,
            )
            .unwrap();
    }
    let seen: Vec<(RunId, u64)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert!(store.changed_since(&seen).unwrap().is_empty());
    let events = [custom("a", 2)];
    for i in [3, 777, 1_199] {
        store.append_batch(&[append(&ids[i], 1, &events)]).unwrap();
    }
    let changed = store.changed_since(&seen).unwrap();
    assert_eq!(
        changed,
        [ids[3].clone(), ids[777].clone(), ids[1_199].clone()]
    );
    // What a caller already saw is not a change.
    let seen_later: Vec<(RunId, u64)> = seen
        .iter()
        .map(|(id, n)| (id.clone(), if changed.contains(id) { 2 } else { *n }))
        .collect();
    assert!(store.changed_since(&seen_later).unwrap().is_empty());
    // Asking run by run (the trait's default) agrees.
    let by_run: Vec<RunId> = seen
        .iter()
        .filter(|(id, n)| !store.events_after(id, *n).unwrap().is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(by_run, changed);
}
