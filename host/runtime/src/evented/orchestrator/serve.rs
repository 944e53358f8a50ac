//! The orchestrator thread's loop: it serves commands, the reports workers
//! could not apply themselves, timers and the polling of waiting runs.

use std::cmp::Reverse;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, select};

use super::{Command, Orchestrator, POLL_WAITING};
use crate::evented::bus::Done;

/// What woke the orchestrator thread.
enum Message {
    Command(Command),
    Done(Done),
    /// The command channel closed.
    Closed,
    /// A worker's round changed what the thread waits for, or time passed.
    Nothing,
}

/// The orchestrator thread: serves commands, the reports workers could not
/// apply themselves (another round held the state), timers and the polling
/// of waiting runs, until the command channel closes and every run it drives
/// has answered its callers or only waits for a timer (see the loop). Each
/// round holds the state's lock; so does a
/// worker's round ([`Orchestrator::continue_with`]), so rounds never overlap.
///
/// # Panics
/// When a worker panicked inside its round (the state may be torn): the
/// caller records why and shuts the runtime down.
pub(in crate::evented) fn serve(
    shared: &Mutex<Orchestrator>,
    commands: &Receiver<Command>,
    done: &Receiver<Done>,
    nudged: &Receiver<()>,
) {
    let lock = || {
        shared.lock().unwrap_or_else(|_| {
            panic!("a step worker panicked while it held the orchestrator state")
        })
    };
    let mut open = true;
    let mut polled = std::time::Instant::now();
    loop {
        let (mut timeout, mut due, clock) = {
            let mut this = lock();
            // Closed: stop once no attempt is in flight and every run still
            // here either answered its callers or only waits for a timer.
            // A sleeping run is not waited for: it stays in the store,
            // running, its lease released and its wake time stored, for
            // whichever process takes it next (`weft recover`).
            // Draining: stop once no attempt is in flight, letting go of
            // every run (the next process carries on from the store).
            if this.draining && this.runs.values().all(|r| r.in_flight.is_empty()) {
                this.let_go_of_all();
                if !open {
                    break;
                }
            } else if !open
                && this
                    .runs
                    .values()
                    .all(|r| r.in_flight.is_empty() && (r.waiters.is_empty() || r.only_waits()))
            {
                this.let_go_of_waiting();
                break;
            }
            (
                this.next_timeout(),
                this.delayed.peek().map(|Reverse((due, _))| *due),
                Arc::clone(&this.clock),
            )
        };
        if timeout > POLL_WAITING {
            // Wake up in time to poll the waiting runs; not for the timer.
            timeout = POLL_WAITING;
            due = None;
        }
        let never = crossbeam_channel::never();
        let command_rx = if open { commands } else { &never };
        // Wait for the first message, then take everything already waiting.
        let first = select! {
            recv(command_rx) -> msg => msg.map_or(Message::Closed, Message::Command),
            recv(done) -> msg => msg.map_or(Message::Nothing, Message::Done),
            recv(nudged) -> _ => Message::Nothing,
            default(timeout) => {
                // The wait was computed for the earliest retry: the
                // system clock is there now (within microseconds); a
                // manual clock (tests) jumps to it.
                if let Some(due) = due {
                    clock.sleep_until(due);
                }
                Message::Nothing
            },
        };
        let mut this = lock();
        match first {
            Message::Command(cmd) => this.command(cmd),
            Message::Done(d) => this.finished(d),
            Message::Closed => {
                open = false;
                this.closing = true;
            }
            Message::Nothing => {}
        }
        for _ in 0..1024 {
            if let Ok(d) = done.try_recv() {
                this.finished(d);
            } else if let Ok(cmd) = commands.try_recv() {
                this.command(cmd);
            } else {
                break;
            }
        }
        this.round();
        if polled.elapsed() >= POLL_WAITING {
            this.poll_waiting();
            polled = std::time::Instant::now();
        }
    }
}
