//! Host memory a run will need, estimated from the shape before anything is built, so that an
//! impossible shape is refused at once (exit 2, with the figure) instead of running for a
//! minute and dying of an allocation failure (docs/report.md, "Errors and outputs").

use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::model::Shape;

/// Which paths a run takes, for the estimate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Paths {
    pub gpu: bool,
    pub fast_cpu: bool,
    pub reference: bool,
    /// The GPU reads the states h and o back (`--save-states`).
    pub gpu_states: bool,
}

/// Bytes of host memory a run holds at its peak, from the shape: the problem in f64 (x, y or
/// labels, h0, the weights), and for each path what it allocates per (t, b) row while every
/// result stays alive (the report compares them at the end). The per-row counts follow the
/// code: the reference keeps a, h, o and ∂L/∂o in f64 and returns h and o, and its reach run
/// allocates the same again; the fast path holds f32 copies of x, y, the states and ∂L/∂o
/// and returns h and o in f64; the GPU converts x and y to f32 to upload them.
pub fn host_bytes(s: Shape, paths: Paths) -> u64 {
    let (t, b, d, h, q) = (s.steps as u64, s.batch as u64, s.input as u64, s.hidden as u64, s.output as u64);
    let rows = t.saturating_mul(b);
    let weights = 8 * (h * d + h * h + q * h + h + q) * 3; // the weights and two gradients' worth
    let mut per_row = 8 * (d + q); // x and y
    if paths.reference {
        per_row += 8 * (3 * h + 3 * q);
    }
    if paths.fast_cpu {
        per_row += 4 * (d + 4 * h + 3 * q) + 8 * (h + q);
    }
    if paths.gpu {
        per_row += 4 * (d + q) + if paths.gpu_states { 12 * (h + q) } else { 0 };
    }
    rows.saturating_mul(per_row).saturating_add(weights).saturating_add(8 * b * h)
}

/// What a training run holds, for `train_host_bytes`: its shape, where it runs, and the sizes
/// of everything else it keeps.
#[derive(Clone, Copy, Debug)]
pub struct TrainSizes {
    pub shape: Shape,
    /// Labels (cross-entropy) instead of targets y.
    pub labels: bool,
    /// On the GPU (the weights and the optimiser's state then live in GPU memory).
    pub gpu: bool,
    /// Adam (two moments per weight) rather than SGD (one).
    pub adam: bool,
    /// Minibatches in the held-out set, each of the shape's T·B rows.
    pub held_out_batches: u64,
    /// Losses kept between two log points.
    pub log_every: u64,
    /// Characters sampled after training.
    pub sample: u64,
    /// Characters of the text task's corpus (0 for the generated tasks).
    pub text_chars: u64,
    /// Bytes of the model file the weights start from (0 without one).
    pub init_from_bytes: u64,
    /// A checkpointed run's bound on what grows with T (`memory`): a minibatch's states and
    /// copies take at most this much instead.
    pub checkpointed: Option<u64>,
}

/// Bytes of host memory a training run holds at its peak: the sum of `train_host_parts`.
/// Saturates instead of overflowing: `eval_size` 4·10⁹ gives a figure, not a wrap-around.
pub fn train_host_bytes(t: &TrainSizes) -> u64 {
    // In f64: the products of absurd settings stay finite; `as` saturates past u64::MAX.
    train_host_parts(t).iter().map(|p| p.bytes).sum::<f64>() as u64
}

/// One part of a training run's memory, for the message that refuses it: what it is, the
/// config fields that size it (in backticks), and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    pub what: &'static str,
    pub fields: &'static str,
    pub bytes: f64,
}

/// A training run's host memory at its peak, part by part: the weights (f32, in the setup and
/// the result) and, on the CPU path, the optimiser's state, each iteration's f64 copy of the
/// weights, the f32 copies and the gradients of the fast path; a training minibatch and its
/// copies (the problem, the fast path's states per (t, b) row as `host_bytes` counts them, or
/// the GPU's f32 upload) and a held-out evaluation's outputs; the whole held-out set; the
/// losses between log points; the sample; the corpus; the model file read.
pub fn train_host_parts(t: &TrainSizes) -> [Part; 7] {
    let s = t.shape;
    let (rows, d, h, q) = ((s.steps as f64) * (s.batch as f64), s.input as f64, s.hidden as f64, s.output as f64);
    let params = h * d + h * h + q * h + h + q;
    let target = if t.labels { 4.0 } else { 8.0 * q };
    let batch = rows * (8.0 * d + target);
    let (weights, per_row) = if t.gpu {
        // The setup's weights, the read-back bytes and their copy, the result; the f32 upload
        // of a batch and the outputs read back at evaluations (f32 and f64).
        (16.0 * params + 4.0 * h * h, 4.0 * (d + q) + 12.0 * q)
    } else {
        // The setup's weights, the engine's, the optimiser's moments, the f64 parameters of
        // the problem, the fast path's f32 copies (w_hh twice, padded) and gradients (f32 and
        // f64), the result.
        let optimiser = if t.adam { 8.0 } else { 4.0 };
        (
            (4.0 + 4.0 + optimiser + 8.0 + 12.0 + 8.0 + 4.0) * params + 8.0 * h * h,
            4.0 * (d + 4.0 * h + 3.0 * q) + 8.0 * (h + q) + 8.0 * q,
        )
    };
    let copies = if t.gpu { 1.0 } else { 2.0 }; // the CPU path's problem holds a copy of the batch
    let part = |what, fields, bytes| Part { what, fields, bytes };
    [
        part("the weights and the optimiser's state", "`hidden`", weights),
        part(
            "a minibatch with its states",
            "`steps` or `batch`",
            t.checkpointed.map_or(rows * per_row, |b| (b as f64).min(rows * per_row)) + copies * batch,
        ),
        part("the held-out set", "`eval_size`", t.held_out_batches as f64 * batch),
        part("the losses between log points", "`log_every`", 8.0 * t.log_every as f64),
        part("the sample", "`sample`", 4.0 * t.sample as f64),
        part("the text", "`text` (a shorter one)", 12.0 * t.text_chars as f64),
        part("the model read", "`init_from`", 3.0 * t.init_from_bytes as f64),
    ]
}

/// Bytes of host memory reading a text of `bytes` bytes takes at its peak: the bytes, and four
/// bytes per character (at most one per byte) for the characters, their sorted copy, their
/// ids and the training and held-out parts.
pub fn text_host_bytes(bytes: u64) -> u64 {
    bytes.saturating_mul(17)
}

/// The memory this process may plan for: `cap` (a caller's `max_memory`) if given, else the
/// smaller of the system's available memory and the cgroup's limit (a container's real
/// bound); None where neither can be read.
pub fn available(cap: Option<u64>) -> Option<u64> {
    if cap.is_some() {
        return cap;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A number of bytes, plain or with a K, M, G or T suffix (binary: 1K = 1024): "8000000000",
/// "64M", "2G". None for anything else.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Refuses (exit 2) when `bytes` exceed the memory available (`cap`, or the system's),
/// naming both figures and what to change (`hint`, may be empty).
pub fn check_host(bytes: u64, cap: Option<u64>, what: &str, hint: &str) -> Result<()> {
    match available(cap) {
        Some(avail) if bytes > avail => Err(Error::Invalid(format!(
            "{what} needs about {} of memory, more than the {} available{}{}",
            human_bytes(bytes),
            human_bytes(avail),
            if cap.is_some() { " (`max_memory`)" } else { "" },
            if hint.is_empty() { String::new() } else { format!(": {hint}") }
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("3m"), Some(3 << 20));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }

    #[test]
    fn a_training_run_counts_its_weights_and_its_held_out_set() {
        let sizes = |hidden, held_out_batches, gpu| TrainSizes {
            shape: Shape::new(50, 32, 2, hidden, 1).unwrap(),
            labels: false,
            gpu,
            adam: true,
            held_out_batches,
            log_every: 10,
            sample: 0,
            text_chars: 0,
            init_from_bytes: 0,
            checkpointed: None,
        };
        // h = 30000 on the CPU: w_hh alone is 3.6 GB in f32, and the run keeps it many times.
        assert!(train_host_bytes(&sizes(30000, 16, false)) > 40_000_000_000);
        assert!(train_host_bytes(&sizes(30000, 16, true)) > 15_000_000_000);
        // eval_size 4·10⁹ at B = 32: 1.25·10⁸ held-out batches of 1600 rows × 24 bytes.
        assert!(train_host_bytes(&sizes(128, 125_000_000, false)) > 4_000_000_000_000);
        // The default run is small.
        assert!(train_host_bytes(&sizes(128, 16, false)) < 50_000_000);
        let shape = Shape { steps: 1 << 31, batch: 1 << 31, input: 1 << 20, hidden: 1 << 20, output: 1 << 20 };
        let huge = TrainSizes { shape, held_out_batches: u64::MAX, ..sizes(1, 1, false) };
        assert_eq!(train_host_bytes(&huge), u64::MAX, "saturates");
    }

    #[test]
    fn the_estimate_counts_each_path() {
        let s = Shape::new(1000, 10, 4, 8, 2).unwrap();
        let none = host_bytes(s, Paths::default());
        let reference = host_bytes(s, Paths { reference: true, ..Default::default() });
        // x and y in f64: 10000 rows of 8·(4 + 2) bytes, plus the small weights.
        assert!((480_000..490_000).contains(&none), "{none}");
        // The reference adds 8·(3·8 + 3·2) = 240 bytes per row.
        assert_eq!(reference - none, 2_400_000);
    }
}
