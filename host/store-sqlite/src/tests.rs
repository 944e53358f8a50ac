//! The store against its contract, on real database files where it matters.
//!
//! - `appends`: creating runs, appending, conflicts, atomicity, racing writers;
//! - `views`: listing runs;
//! - `database`: the file itself: reopening, pragmas, migrations, damage;
//! - `pins`: workflow locks and the runs pinned to them, and the migration
//!   that added them;
//! - `read_only`: reading a database in a directory that cannot be written.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};

use serde_json::json;
use weft_core::{
    Append, CustomEvent, Event, EventStore, FailureKind, Owner, RunError, RunId, RunIndex, RunMeta,
    RunStatus, StepError, StepId, StepPath, StoreError, Timestamp, WorkflowRegistry,
};

use crate::{Durability, SqliteStore};

mod appends;
mod database;
mod pins;
#[cfg(unix)]
mod read_only;
mod views;

fn run_id(id: &str) -> RunId {
    RunId::new(id).unwrap()
}

fn path(id: &str) -> StepPath {
    StepPath::root(&StepId::new(id).unwrap())
}

fn meta(run: &str) -> RunMeta {
    RunMeta {
        run_id: run_id(run),
        workflow_id: StepId::new("order-fulfil").unwrap(),
        manifest: "/srv/flows/order.toml".to_owned(),
        manifest_sha256: "ab".repeat(32),
        workflow_digest: None,
    }
}

fn started(run: &str, at: u64) -> Event {
    Event::RunStarted {
        run: run_id(run),
        workflow: StepId::new("order-fulfil").unwrap(),
        input: json!({"order": 7}),
        state: json!({}),
        at: Timestamp(at),
        origin: None,
    }
}

fn step_started(step: &str, attempt: u32, at: u64) -> Event {
    Event::StepStarted {
        path: path(step),
        step: StepId::new(step).unwrap(),
        attempt,
        input: json!({"n": 1}).into(),
        at: Timestamp(at),
    }
}

fn custom(step: &str, at: u64) -> Event {
    Event::Custom {
        path: path(step),
        event: CustomEvent {
            kind: "progress".to_owned(),
            data: json!({"pct": 50}),
        },
        at: Timestamp(at),
    }
}

fn error(message: &str) -> StepError {
    StepError::host(FailureKind::Deadline, message).with_details(json!({"limit_ms": 100}))
}

/// One event of every variant, in an order the state machine would accept.
fn every_variant(run: &str) -> Vec<Event> {
    let a = path("reserve");
    vec![
        started(run, 1_000),
        step_started("reserve", 1, 1_001),
        custom("reserve", 1_002),
        Event::StepFailed {
            path: a.clone(),
            error: error("too slow"),
            measured: None,
            at: Timestamp(1_003),
        },
        step_started("reserve", 2, 1_004),
        Event::StepCompleted {
            path: a.clone(),
            output: json!({"reserved": true, "price": 12.5, "items": [1, 2, 3]}).into(),
            state: Some(json!({"reserved": 1})),
            measured: None,
            at: Timestamp(1_005),
        },
        step_started("approve", 1, 1_006),
        Event::StepSuspended {
            path: path("approve"),
            payload: json!({"ask": "manager"}),
            labels: vec!["approval".to_owned()],
            state: None,
            measured: None,
            at: Timestamp(1_007),
        },
        Event::RunSuspended {
            paths: vec![path("approve")],
            at: Timestamp(1_008),
        },
        Event::RunResumed {
            path: path("approve"),
            payload: json!({"ok": true}),
            at: Timestamp(1_009),
        },
        step_started("approve", 1, 1_010),
        Event::StepBailed {
            path: path("approve"),
            output: json!("bailed"),
            state: Some(json!({"bailed": true})),
            measured: None,
            at: Timestamp(1_011),
        },
        Event::RunCompleted {
            output: json!({"done": true}),
            at: Timestamp(1_012),
        },
        Event::RunFailed {
            error: RunError {
                step: Some(a),
                error: error("late failure"),
            },
            at: Timestamp(1_013),
        },
        Event::RunCanceled {
            reason: Some("operator".to_owned()),
            at: Timestamp(1_014),
        },
    ]
}

fn file_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("weft.db")).unwrap()
}

/// An append under the lease every test run is created with (epoch 1).
fn append<'a>(run: &'a RunId, expected: u64, events: &'a [Event]) -> Append<'a> {
    Append {
        run,
        expected,
        epoch: 1,
        events,
        wake: None,
    }
}

/// The owner test runs are created by (the lease contract itself is tested
/// by the conformance suite in `tests/all/store_contract.rs`).
fn owner() -> Owner {
    Owner {
        id: "test-owner".into(),
        ttl: std::time::Duration::from_secs(60),
    }
}

fn assert_sound(store: &SqliteStore) {
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let conn = store.lock();
    let violations: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(violations, 0);
}
