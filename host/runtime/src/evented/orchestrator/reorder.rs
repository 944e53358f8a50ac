//! Seeded reordering, a test and verification mode (see
//! [`EventedOptions::reorder_seed`](crate::EventedOptions::reorder_seed)):
//! a run's finished attempts are held back and applied in an order drawn
//! from a seed, not in the order they happen to finish in. Off (`None`), the
//! orchestrator pays nothing for it.

use weft_core::RunId;

use super::Orchestrator;
use crate::evented::bus::Done;

/// The reports of a run's finished attempts, held back by the reordering
/// mode, and the generator that picks which one applies next. Held reports
/// stay in the run's `in_flight` until they apply, so every check that
/// waits for a run to go idle waits for them too.
pub(super) struct Held {
    pub(super) reports: Vec<Done>,
    rng: SplitMix64,
}

impl Held {
    /// One generator per run, from the seed and the run id: a run's order
    /// does not depend on the other runs the orchestrator drives.
    pub(super) fn new(seed: u64, run: &RunId) -> Self {
        // FNV-1a of the run id.
        let hash = run
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        Self {
            reports: Vec::new(),
            rng: SplitMix64(seed ^ hash),
        }
    }

    /// Takes the next report to apply, drawn by the generator among the
    /// held ones sorted by address (so the draw does not depend on the
    /// order the workers happened to report in).
    fn draw(&mut self) -> Option<Done> {
        if self.reports.is_empty() {
            return None;
        }
        self.reports
            .sort_by(|a, b| (&a.path, a.attempt).cmp(&(&b.path, b.attempt)));
        let len = self.reports.len() as u64;
        let pick = usize::try_from(self.rng.next() % len).unwrap_or(0);
        Some(self.reports.remove(pick))
    }
}

/// splitmix64 (Steele, Lea, Flood 2014; the seeding generator of
/// `java.util.SplittableRandom` and of xoshiro): tiny, and good enough to
/// pick orders.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Orchestrator {
    /// Reordering mode: for each run holding reports, once none of its
    /// attempts is still in flight (every one has reported), applies one
    /// held report drawn by the run's generator, advances the run and
    /// commits, so the run may dispatch new work; repeats while the run
    /// stays quiescent. New work dispatched in between is waited for, and
    /// its reports join the draw.
    pub(super) fn release_held(&mut self) {
        let holding: Vec<RunId> = self.holding.drain().collect();
        for run in holding {
            while let Some(active) = self.runs.get_mut(&run) {
                let Some(held) = &mut active.held else {
                    break;
                };
                if held.reports.len() < active.in_flight.len() {
                    // Attempts still run: wait for their reports.
                    self.holding.insert(run);
                    break;
                }
                let Some(done) = held.draw() else {
                    break;
                };
                self.report(done);
                self.advance_and_commit();
            }
        }
    }
}
