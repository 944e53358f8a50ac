//! `weft run --watch`: a run's events printed as they happen, numbered like
//! `weft events` numbers them, as human lines (guest-controlled text
//! escaped) or JSON lines.

use weft_core::{Event, RunId};
use weft_runtime::RunObserver;

use crate::output;
use crate::status::write_event;

/// Prints each event it is given, numbered from 1.
pub struct Watcher {
    seq: usize,
    json: bool,
    /// Print every event (`--watch`); otherwise only say when the run sleeps.
    print: bool,
    /// Say on stderr when the run sleeps.
    notes: bool,
    /// Stdout is still open (a closed one ends the printing, not the run).
    open: bool,
    /// A write error other than a closed stdout, reported once the run is done.
    error: Option<crate::exit::Failure>,
}

impl Watcher {
    /// A watcher printing JSON lines (`json`) or human lines, of every
    /// event if `print` (`--watch`); it says on stderr when the run sleeps
    /// either way.
    pub fn new(json: bool, print: bool) -> Self {
        Self::after(0, json, print)
    }

    /// [`Watcher::new`] for a run that already has `seen` events (a
    /// resume): its first event is numbered `seen + 1`, as in the store.
    pub fn after(seen: usize, json: bool, print: bool) -> Self {
        Self {
            seq: seen,
            json,
            print,
            notes: true,
            open: true,
            error: None,
        }
    }

    /// This watcher without the note on stderr when the run sleeps (`weft
    /// events --follow` prints events only).
    pub fn quiet(mut self) -> Self {
        self.notes = false;
        self
    }

    /// Prints the run's next event.
    pub fn event(&mut self, event: &Event) {
        self.seq += 1;
        if let Event::SleepStarted { path, until, .. } = event
            && self.notes
        {
            output::sleeping_note(path, *until);
        }
        if !self.print || !self.open || self.error.is_some() {
            return;
        }
        let (seq, json) = (self.seq, self.json);
        match output::print(|out| write_event(out, seq as u64, event, json)) {
            Ok(open) => self.open = open,
            Err(failure) => self.error = Some(failure),
        }
    }

    /// Whether stdout is still open, or the write error that stopped the
    /// printing.
    ///
    /// # Errors
    /// The first write error other than a closed stdout.
    pub fn finish(self) -> Result<bool, crate::exit::Failure> {
        match self.error {
            Some(failure) => Err(failure),
            None => Ok(self.open),
        }
    }
}

impl RunObserver for Watcher {
    fn event(&mut self, _run: &RunId, event: &Event) {
        Watcher::event(self, event);
    }
}
