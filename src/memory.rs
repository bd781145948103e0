//! Host memory a run will need, estimated from the shape before anything is built, so that an
//! impossible shape is refused at once (exit 2, with the figure) instead of running for a
//! minute and dying of an allocation failure (docs/report.md, "The command").

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
