//! The training tasks, generated from a seed (nothing is downloaded). Each minibatch is the
//! model's inputs x `[T,B,d]` and its targets, scored as the task says (docs/training.md).
//!
//! - adding (Hochreiter & Schmidhuber 1997; Le et al. 2015): x_t = (value ~ U(0,1), marker);
//!   exactly two markers, one uniformly in the first ⌊T/2⌋ steps and one in the rest; the
//!   target is the sum of the two marked values, scored at the last step only (mse).
//! - copy (Arjovsky et al. 2016): with T = steps − 20, ten symbols from 1..=8, T − 1 blanks, a
//!   delimiter, ten blanks; the targets are blanks, then the ten symbols in the last ten steps
//!   (cross-entropy at every step).
//! - text: a character model over a file (`text::Corpus`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::Targets;

/// Symbols of the copy task: 0 is the blank, 1..=8 the alphabet, 9 the delimiter (input only).
pub const COPY_ALPHABET: usize = 8;
pub const COPY_RECALL: usize = 10;
const COPY_DELIMITER: usize = COPY_ALPHABET + 1;
/// Input one-hot size of the copy task (blank, 8 symbols, delimiter).
pub const COPY_INPUT: usize = COPY_ALPHABET + 2;
/// Output classes of the copy task (blank and the 8 symbols; the delimiter is never a target).
pub const COPY_OUTPUT: usize = COPY_ALPHABET + 1;

/// One minibatch: x `[T,B,d]` and targets scored at `loss_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<f64>,
    pub targets: Targets,
}

/// A seeded generator: `rng(seed, stream)` draws are the same on every machine.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Input and output sizes (d, q) of the adding task.
pub const ADDING_INPUT: usize = 2;
pub const ADDING_OUTPUT: usize = 1;

/// The adding problem: B sequences of T steps (T ≥ 2). The target y `[T,B,1]` is zero except at
/// the last step, the only one scored.
pub fn adding_batch(r: &mut impl Rng, steps: usize, batch: usize) -> Batch {
    assert!(steps >= 2, "the adding problem needs T ≥ 2");
    let half = steps / 2;
    let mut x = vec![0.0; steps * batch * ADDING_INPUT];
    let mut y = vec![0.0; steps * batch];
    for b in 0..batch {
        for t in 0..steps {
            x[(t * batch + b) * ADDING_INPUT] = r.random::<f64>();
        }
        let first = r.random_range(0..half);
        let second = r.random_range(half..steps);
        let mut sum = 0.0;
        for m in [first, second] {
            x[(m * batch + b) * ADDING_INPUT + 1] = 1.0;
            sum += x[(m * batch + b) * ADDING_INPUT];
        }
        y[((steps - 1) * batch + b) * ADDING_OUTPUT] = sum;
    }
    Batch { x, targets: Targets::Mse(y) }
}

/// The copy task: B sequences of `steps` = T + 20 steps (T ≥ 1, so steps ≥ 21).
pub fn copy_batch(r: &mut impl Rng, steps: usize, batch: usize) -> Batch {
    assert!(steps > 2 * COPY_RECALL, "the copy task needs steps ≥ 21");
    let mut x = vec![0.0; steps * batch * COPY_INPUT];
    let mut labels = vec![0u32; steps * batch];
    let delimiter_at = steps - COPY_RECALL - 1;
    for b in 0..batch {
        let mut one_hot = |t: usize, symbol: usize| x[(t * batch + b) * COPY_INPUT + symbol] = 1.0;
        for k in 0..COPY_RECALL {
            let symbol = r.random_range(1..=COPY_ALPHABET);
            one_hot(k, symbol);
            labels[(steps - COPY_RECALL + k) * batch + b] = symbol as u32;
        }
        for t in COPY_RECALL..steps {
            one_hot(t, if t == delimiter_at { COPY_DELIMITER } else { 0 });
        }
    }
    Batch { x, targets: Targets::Xent(labels) }
}

/// The copy task's memoryless baseline: blanks for sure, then a uniform guess over the
/// alphabet for each of the ten recalled symbols, averaged over every step.
pub fn copy_baseline(steps: usize) -> f64 {
    COPY_RECALL as f64 * (COPY_ALPHABET as f64).ln() / steps as f64
}

/// The adding problem's baseline: always predicting 1 (the target's mean) scores
/// E[(y − 1)²] = Var(U₁ + U₂) = 1/6.
pub const ADDING_BASELINE: f64 = 1.0 / 6.0;

/// Fraction of the recalled symbols (the copy task's last ten steps) whose largest output is
/// the right symbol; `o` is `[T,B,q]`.
pub fn copy_accuracy(o: &[f64], labels: &[u32], steps: usize, batch: usize) -> f64 {
    let q = COPY_OUTPUT;
    let mut right = 0usize;
    for t in steps - COPY_RECALL..steps {
        for b in 0..batch {
            let row = &o[(t * batch + b) * q..][..q];
            let best = (0..q).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap_or(0);
            right += (best as u32 == labels[t * batch + b]) as usize;
        }
    }
    right as f64 / (COPY_RECALL * batch) as f64
}
