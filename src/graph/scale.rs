//! The colour scale of the annotation: ‖∂L/∂h_t‖ on a log scale, through viridis.

use super::picture::Rgb;

/// Drawn where a norm cannot sit on a log scale (zero, NaN, ∞).
pub const NO_VALUE: Rgb = (190, 190, 190);

/// viridis at 0, ¼, ½, ¾, 1 (stopped short of its palest yellow, which vanishes on white).
const MAP: [Rgb; 5] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (220, 215, 40)];

/// The colour map at u ∈ [0, 1].
pub fn colormap(u: f64) -> Rgb {
    let u = u.clamp(0.0, 1.0) * (MAP.len() - 1) as f64;
    let i = (u.floor() as usize).min(MAP.len() - 2);
    let f = u - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (MAP[i], MAP[i + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour scale spans at least this many decades.
pub const MIN_DECADES: f64 = 2.0;

/// The log scale of the annotation: log10 of the smallest and largest plottable norm, widened
/// to `MIN_DECADES` when they are closer.
#[derive(Clone, Copy, Debug)]
pub struct LogScale {
    pub lo: f64,
    pub hi: f64,
}

impl LogScale {
    pub fn new(values: &[f64]) -> Self {
        let logs: Vec<f64> = values.iter().filter(|v| v.is_finite() && **v > 0.0).map(|v| v.log10()).collect();
        let lo = logs.iter().copied().reduce(f64::min).unwrap_or(-1.0);
        let hi = logs.iter().copied().reduce(f64::max).unwrap_or(1.0);
        // At least MIN_DECADES, centred on the data: a factor of 2 between the norms should
        // not look like the whole range from vanishing to exploding.
        let widen = (MIN_DECADES - (hi - lo)).max(0.0) / 2.0;
        LogScale { lo: lo - widen, hi: hi + widen }
    }

    /// Where v sits on the scale, in [0, 1]; None when it cannot sit on a log scale.
    pub fn position(&self, v: f64) -> Option<f64> {
        (v.is_finite() && v > 0.0).then(|| ((v.log10() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0))
    }

    pub fn color(&self, v: f64) -> Rgb {
        self.position(v).map_or(NO_VALUE, colormap)
    }

    /// Edge width: 1.5 px at the smallest norm to 8 px at the largest.
    pub fn width(&self, v: f64) -> f64 {
        self.position(v).map_or(1.5, |u| 1.5 + 6.5 * u)
    }
}

/// A norm as the graph prints it: three significant digits, and "overflow" where it is not
/// finite (NaN or ∞: a failed run overflowed there; the legend says so).
pub fn short(v: f64) -> String {
    if v.is_finite() { crate::format::significant(v, 3) } else { OVERFLOW.to_string() }
}

/// The label of a norm that is not finite.
pub const OVERFLOW: &str = "overflow";

/// Black or white text, whichever reads on `fill`.
pub fn text_on(fill: Rgb) -> Rgb {
    let luma = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
    if luma > 140.0 { (0, 0, 0) } else { (255, 255, 255) }
}
