//! Seeing vanishing and exploding gradients: how far back in time the last step's loss
//! reaches, measured by the "reach profile" ‖∂L_T/∂h_t‖ (t = 1..T), and its per-step growth
//! factor fitted in log space.
//!
//! With φ = identity, ∂L_T/∂h_t = (w_hhᵀ)^{T−t} w_qhᵀ ∂L_T/∂o_T, so going back one step
//! multiplies the gradient by w_hhᵀ once more: its norm changes by a factor that tends to the
//! spectral radius ρ(w_hh) (exactly ρ when w_hh is ρ times an orthogonal matrix).

use crate::cpu::reference;
use crate::model::{LossAt, Problem};

/// ‖∂L_T/∂h_t‖ for t = 1..T (index t − 1), where L_T = 1/B Σ_b ℓ(o_Tb, y_Tb) is the last step's
/// loss alone: the reference's grad_h_norm for the same problem scored with `LossAt::Last`.
pub fn reach_profile(p: &Problem) -> Vec<f64> {
    reference::bptt(&p.clone().with_loss_at(LossAt::Last)).grad_h_norm
}

/// The per-step factor by which a profile like `reach_profile`'s changes going BACK in time:
/// exp(−slope) where slope is the least-squares slope of `log(profile[t])` against t. So a
/// factor < 1 means the gradient vanishes going back (shrinks ×factor per step), > 1 means it
/// explodes.
///
/// Zero and non-finite entries (underflow, overflow) are skipped. The ⌊T/4⌋ entries nearest T
/// are also left out: near the scored step every eigen-direction of w_hh still contributes,
/// and the ones with smaller |λ| die out within a few steps, so that stretch falls (or rises)
/// faster than the long-run rate ρ the factor is meant to measure; a quarter of the sequence
/// covers that transient whenever the spectral gap makes it short, and keeps most points for
/// the fit. Returns None when fewer than two usable points remain.
pub fn fit_growth_factor(profile: &[f64]) -> Option<f64> {
    let skip = profile.len() / 4;
    let points: Vec<(f64, f64)> = profile[..profile.len() - skip]
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite() && **v > 0.0)
        .map(|(i, v)| ((i + 1) as f64, v.ln()))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut s_ty, mut s_tt) = (0.0, 0.0);
    for (t, y) in &points {
        s_ty += (t - mean_t) * (y - mean_y);
        s_tt += (t - mean_t) * (t - mean_t);
    }
    let slope = s_ty / s_tt;
    Some((-slope).exp())
}

/// How the backward pass behind a reach profile was truncated, for its reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReachCut {
    /// Full BPTT.
    None,
    /// Regular truncation K steps back (K < T).
    Steps(usize),
    /// Randomised truncation with cut probability P: the profile is one draw of the cuts.
    Random(f64),
    /// Segments: the gradient cut at their boundaries.
    Segments,
}

/// The reach line's reading, computed from the profile it follows, so that its numbers are
/// the printed ones: ‖∂L_T/∂h_1‖ over ‖∂L_T/∂h_T‖ and the mean factor per step back between
/// them (the fitted long-run `factor` beside them, when there is one). Under truncation the
/// profile is exactly 0 before the first step it no longer reaches: the sentence says where,
/// and reads the part it reaches; under randomised truncation `expected_factor` is the fitted
/// factor of the untruncated profile, which is the expectation over the cuts.
pub fn describe_profile(profile: &[f64], cut: ReachCut, factor: Option<f64>, expected_factor: Option<f64>) -> String {
    let nt = profile.len();
    if nt == 0 {
        return "no reach profile".into();
    }
    let last = profile[nt - 1];
    // The first step the gradient reaches: after the last exact zero.
    let first_reached = profile.iter().rposition(|&v| v == 0.0).map_or(1, |z| z + 2);
    let fitted =
        |f: Option<f64>| f.map_or(String::new(), |f| format!("; fitted long-run factor ×{}", format_factor(f)));
    match cut {
        ReachCut::None => span("the last step's gradient", profile, 1, last) + &fitted(factor),
        ReachCut::Steps(k) => {
            let reached = if first_reached > nt {
                "nothing".to_string()
            } else {
                span("within the K steps it reaches, the last step's gradient", profile, first_reached, last)
            };
            format!(
                "truncated K = {k} steps back: ‖∂L_T/∂h_t‖ is exactly 0 for t ≤ {} (T − K), where no loss term reaches; {reached}",
                nt.saturating_sub(k)
            ) + &fitted(factor)
        }
        ReachCut::Segments => {
            let reached = span("within it the last step's gradient", profile, first_reached.min(nt), last);
            format!(
                "the gradient is cut at the segment boundaries: ‖∂L_T/∂h_t‖ is exactly 0 for t ≤ {} (before the last segment); {reached}",
                first_reached - 1
            ) + &fitted(factor)
        }
        ReachCut::Random(p) => {
            let stop = if first_reached > 1 {
                format!(
                    "this run's cuts stop the last step's gradient at t = {first_reached} (exactly 0 for t ≤ {})",
                    first_reached - 1
                )
            } else {
                "this run's cuts leave the last step's path back to t = 1 uncut".to_string()
            };
            let expectation = expected_factor.map_or(String::new(), |f| {
                format!(
                    "; each step kept is scaled ×1/(1−P) = {}, so over the cuts its expectation is the untruncated gradient, which {} ×{} per step back, fitted",
                    format_factor(1.0 / (1.0 - p)),
                    if f < 1.0 { "shrinks" } else { "grows" },
                    format_factor(f)
                )
            });
            format!("randomised truncation: {stop}{expectation}")
        }
    }
}

/// "<who> shrinks ×0.86 per step back in time: at t = 1 it is 7.7e-5 of its size at t = T
/// (63 steps back)", from the profile's values at t = `from` and T.
fn span(who: &str, profile: &[f64], from: usize, last: f64) -> String {
    let nt = profile.len();
    let first = profile[from - 1];
    let back = nt - from;
    if back == 0 || !(first.is_finite() && last.is_finite() && first > 0.0 && last > 0.0) {
        return format!("{who} has no measurable change from t = {from} to t = T ({first:e} and {last:e})");
    }
    let ratio = first / last;
    let per_step = ratio.powf(1.0 / back as f64);
    let steps = if back == 1 { "step" } else { "steps" };
    if per_step < 1.0 {
        format!(
            "{who} shrinks ×{} per step back in time: at t = {from} it is {} of its size at t = T ({back} {steps} back)",
            format_factor(per_step),
            format_magnitude(ratio)
        )
    } else if per_step > 1.0 {
        format!(
            "{who} grows ×{} per step back in time: at t = {from} it is {} times its size at t = T ({back} {steps} back)",
            format_factor(per_step),
            format_magnitude(ratio)
        )
    } else {
        format!("{who} keeps its size from t = T back to t = {from} (×1 per step)")
    }
}

/// Two decimals, or more when those would round to 1.00 and hide the direction; three
/// significant digits far from 1 (the report's number rule: never hundreds of digits).
fn format_factor(f: f64) -> String {
    if !(0.01..100.0).contains(&f) {
        return crate::format::significant(f, 3);
    }
    let mut decimals = 2;
    while decimals < 8 && format!("{f:.decimals$}").parse::<f64>() == Ok(1.0) {
        decimals += 1;
    }
    format!("{f:.decimals$}")
}

/// Two significant digits ("0.53", "4.5", "446", "7.7e-5", "3.2e8"), "more than 1e308" past
/// f64's range.
fn format_magnitude(x: f64) -> String {
    if x.is_infinite() {
        "more than 1e308".to_string()
    } else if x == 0.0 {
        "less than 1e-308".to_string()
    } else if (0.01..1000.0).contains(&x) {
        let decimals = (1 - x.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.1e}")
    }
}
