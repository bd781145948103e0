//! The recurrences' team of threads: one pass over all steps, each step split into column
//! blocks, no block of step t started before every block of step t − 1 has finished.
//!
//! A step at h = 1024, B = 1 takes about 20 µs per thread; handing each step to a thread pool
//! and waiting for it (a wake-up, a steal, a join) costs microseconds, twice per step pair. Here
//! the threads stay for the whole pass: thread k claims block k of each step (one
//! compare-and-swap), does it, counts it done, and spins on the shared count until the step is
//! complete, a cache-line transfer when the threads keep pace. A thread that finds another's
//! block still unclaimed after finishing its own takes it over, so a thread descheduled on a busy
//! machine delays the pass by at most the block it is inside, not by every step it misses.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

/// Spins before a waiting thread starts yielding its core: tens of µs, longer than the usual
/// skew between threads within a step, much shorter than a scheduler time slice.
const SPINS_BEFORE_YIELD: u32 = 1 << 12;

/// Runs `unit(step, block)` for every step in 0..steps and block in 0..blocks on up to `blocks`
/// threads (the calling one and blocks − 1 rayon jobs), step after step: every unit of
/// step t sees everything the units of earlier steps wrote. Thread k does block k whenever it
/// keeps pace, so each block's data stays in one core's caches. Returns what the units return,
/// at [step · blocks + block].
pub fn run_steps(blocks: usize, steps: usize, unit: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
    let state = State {
        blocks,
        steps,
        next: (0..blocks).map(|_| Line(AtomicUsize::new(0))).collect(),
        done: Line(AtomicUsize::new(0)),
        results: (0..steps * blocks).map(|_| AtomicU64::new(0)).collect(),
        poisoned: AtomicBool::new(false),
    };
    let member = |k: usize| {
        let _guard = PoisonOnPanic(&state.poisoned);
        state.member(k, &unit);
    };
    // Members 1.. are rayon jobs: the pool's workers are already running (no thread is started
    // per pass), and a job no worker picks up costs nothing but time: member 0 takes over its
    // blocks, and the job, run late, finds every step done.
    rayon::scope(|s| {
        for k in 1..blocks {
            s.spawn(move |_| member(k));
        }
        member(0);
    });
    // The scope's end orders every store before these loads.
    state.results.iter().map(|r| f64::from_bits(r.load(Ordering::Relaxed))).collect()
}

/// A counter alone on its cache line: a thread claiming its block or counting it done does not
/// take a line another thread is about to write from that thread's core.
#[repr(align(64))]
struct Line(AtomicUsize);

struct State {
    blocks: usize,
    steps: usize,
    /// next[k]: the step whose block k is to be claimed next (a claim moves it from t to t + 1).
    next: Vec<Line>,
    /// Units finished, over all steps: step t is complete when done ≥ (t + 1)·blocks.
    done: Line,
    results: Vec<AtomicU64>,
    /// Set when a member panicked: the others stop waiting (and panic too) instead of hanging.
    poisoned: AtomicBool,
}

impl State {
    fn member(&self, k: usize, unit: &(impl Fn(usize, usize) -> f64 + Sync)) {
        let n = self.blocks;
        loop {
            // Every unit of the steps before t is finished, and (AcqRel counts) their writes
            // are visible here.
            let t = self.done.0.load(Ordering::Acquire) / n;
            if t >= self.steps {
                return;
            }
            // Own block first, then any block still unclaimed in step t. A block can only be
            // claimed in its step: next[j] is t for all j until step t's units are claimed.
            // Another's block is looked at before the compare-and-swap, which would take its line
            // even when it fails.
            for j in (k..n).chain(0..k) {
                let next = &self.next[j].0;
                if (j == k || next.load(Ordering::Relaxed) == t)
                    && next.compare_exchange(t, t + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    let r = unit(t, j);
                    self.results[t * n + j].store(r.to_bits(), Ordering::Relaxed);
                    self.done.0.fetch_add(1, Ordering::AcqRel);
                }
            }
            let mut spins = 0u32;
            while self.done.0.load(Ordering::Acquire) < (t + 1) * n {
                assert!(!self.poisoned.load(Ordering::Relaxed), "a recurrence thread panicked");
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    thread::yield_now();
                }
            }
        }
    }
}

/// Marks the pass poisoned if its thread unwinds, so the others do not wait forever.
struct PoisonOnPanic<'a>(&'a AtomicBool);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each unit (t, k) checks that every unit of step t − 1 has written its slot, then writes
    /// its own: a step started early, or a unit done twice or never, fails. Three blocks over
    /// two cores, so takeovers happen too.
    #[test]
    fn every_step_sees_the_whole_previous_step() {
        let (blocks, steps) = (3, 3000);
        let slots: Vec<AtomicUsize> = (0..blocks).map(|_| AtomicUsize::new(0)).collect();
        let results = run_steps(blocks, steps, |t, k| {
            for (j, slot) in slots.iter().enumerate() {
                assert!(slot.load(Ordering::Relaxed) >= t, "step {t} started before block {j} finished the last");
            }
            assert_eq!(slots[k].swap(t + 1, Ordering::Relaxed), t, "block {k} of step {t} done twice");
            (t * blocks + k) as f64
        });
        assert_eq!(results, (0..blocks * steps).map(|i| i as f64).collect::<Vec<_>>());
        assert!(slots.iter().all(|s| s.load(Ordering::Relaxed) == steps));
    }
}
