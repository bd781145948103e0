//! The character-level language model's data: a text file split into a training part (the
//! first 90%) and a held-out part (the last 10%), each character one-hot over the file's
//! vocabulary (its distinct characters, sorted), the label at step t the character at t + 1.
//!
//! Minibatches are cut from the training part in one of two ways (d2l.ai §9.3):
//! - random: each sequence starts at an offset drawn uniformly; h starts at zero.
//! - sequential: the training part is split into B streams of equal length, one per batch
//!   entry, read T characters at a time; h is carried from one minibatch to the next with the
//!   gradient cut at the boundary (like `--segments`), and reset to zero when the streams wrap.

use std::path::Path;

use rand::Rng;

use super::tasks::Batch;
use crate::error::{Error, Result, one_line};
use crate::model::Targets;

/// The most distinct characters a vocabulary may have (d = q = V; larger is surely not text).
const MAX_VOCAB: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    pub vocab: Vec<char>,
    pub train: Vec<u32>,
    pub held_out: Vec<u32>,
}

/// The largest text file `--text` reads (each character becomes a u32 index, four times this).
const MAX_TEXT_BYTES: u64 = 256 << 20;

impl Corpus {
    /// Reads `path` as UTF-8 text; a file that cannot be read, is empty, is binary (a NUL byte
    /// or invalid UTF-8) or is too short for one training and one held-out sequence of `steps`
    /// is an error naming it.
    pub fn load(path: &Path, steps: usize) -> Result<Self> {
        let bad = |why: String| Error::Invalid(format!("`text` {}: {why}", one_line(&path.display().to_string())));
        // A regular file of bounded size only: `--text /dev/zero` or a FIFO must not read forever.
        let bytes = crate::io::read_regular(path, MAX_TEXT_BYTES).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("`text` {m}")),
            e => e,
        })?;
        if bytes.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        if bytes.contains(&0) {
            return Err(bad("a binary file (it contains NUL bytes), not text".into()));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| bad(format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
        Self::from_text(&text, steps).map_err(|e| match e {
            Error::Invalid(why) => bad(why),
            other => other,
        })
    }

    pub fn from_text(text: &str, steps: usize) -> Result<Self> {
        let chars: Vec<char> = text.chars().collect();
        let mut vocab = chars.clone();
        vocab.sort_unstable();
        vocab.dedup();
        vocab.shrink_to_fit();
        if vocab.len() > MAX_VOCAB {
            return Err(Error::Invalid(format!(
                "{} distinct characters; at most {MAX_VOCAB} are supported",
                vocab.len()
            )));
        }
        let ids: Vec<u32> = chars.iter().map(|c| vocab.binary_search(c).expect("in the vocabulary") as u32).collect();
        let held = (ids.len() / 10).max(steps + 1);
        if ids.len() < held + 2 * (steps + 1) {
            return Err(Error::Invalid(format!(
                "{} characters is too short for `steps` {steps}: it needs at least {} (a held-out tenth and two \
                 training sequences of T + 1)",
                ids.len(),
                held + 2 * (steps + 1)
            )));
        }
        let held_out = ids[ids.len() - held..].to_vec();
        let train = ids[..ids.len() - held].to_vec();
        Ok(Corpus { vocab, train, held_out })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// x one-hot `[T,B,V]` and the next-character labels `[T,B]` for sequences starting at `starts`
    /// in `ids`.
    pub fn batch_at(&self, ids: &[u32], starts: &[usize], steps: usize) -> Batch {
        let (nb, v) = (starts.len(), self.vocab_size());
        let mut x = vec![0.0; steps * nb * v];
        let mut labels = vec![0u32; steps * nb];
        for (b, &s) in starts.iter().enumerate() {
            for t in 0..steps {
                x[(t * nb + b) * v + ids[s + t] as usize] = 1.0;
                labels[t * nb + b] = ids[s + t + 1];
            }
        }
        Batch { x, targets: Targets::Xent(labels) }
    }

    /// Random partitioning: B sequences at uniform offsets of the training part.
    pub fn random_batch(&self, r: &mut impl Rng, steps: usize, batch: usize) -> Batch {
        let last = self.train.len() - steps - 1;
        let starts: Vec<usize> = (0..batch).map(|_| r.random_range(0..=last)).collect();
        self.batch_at(&self.train, &starts, steps)
    }

    /// Sequential partitioning, minibatch `i`: stream b reads characters b·L + c·T .. of the
    /// training part (L = its length / B, c = i mod the chunks per stream). Returns the batch
    /// and whether h restarts from zero (the first chunk of a pass over the streams).
    pub fn sequential_batch(&self, i: usize, steps: usize, batch: usize) -> Result<(Batch, bool)> {
        let stream = self.train.len() / batch;
        let chunks = stream.saturating_sub(1) / steps;
        if chunks == 0 {
            return Err(Error::Invalid(format!(
                "sequential partitioning needs {} training characters per batch entry for `steps` {steps}; \
                 the text has {} for each of {batch} (use a longer text, a smaller `batch` or `partition` random)",
                steps + 1,
                stream
            )));
        }
        let c = i % chunks;
        let starts: Vec<usize> = (0..batch).map(|b| b * stream + c * steps).collect();
        Ok((self.batch_at(&self.train, &starts, steps), c == 0))
    }

    /// The held-out sequences: consecutive windows of T + 1 characters, at most `max` of them.
    pub fn held_out_starts(&self, steps: usize, max: usize) -> Vec<usize> {
        let n = ((self.held_out.len() - 1) / steps).clamp(1, max);
        (0..n).map(|k| k * steps).collect()
    }

    /// The cross-entropy of predicting each training character by its frequency alone: the
    /// memoryless baseline, in nats per character.
    pub fn unigram_entropy(&self) -> f64 {
        let mut counts = vec![0usize; self.vocab_size()];
        self.train.iter().for_each(|&c| counts[c as usize] += 1);
        let n = self.train.len() as f64;
        counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.ln()).sum()
    }

    /// Ids of a prompt; every character must be in the vocabulary.
    pub fn encode(&self, s: &str) -> Result<Vec<u32>> {
        s.chars()
            .map(|c| {
                self.vocab.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    Error::Invalid(format!("`prompt`: the character {c:?} does not occur in the `text` file"))
                })
            })
            .collect()
    }
}
