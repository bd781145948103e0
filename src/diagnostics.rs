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

/// One sentence for a growth factor, e.g. "the last step's gradient shrinks ×0.81 per step
/// back in time: after 64 steps it is 1e-6 of its size".
pub fn describe_reach(factor: f64, steps: usize) -> String {
    if !(factor.is_finite() && factor > 0.0) {
        return format!("the last step's gradient has no measurable growth factor ({factor})");
    }
    let total = factor.powf(steps as f64);
    let step_word = if steps == 1 { "step" } else { "steps" };
    let per_step = format_factor(factor);
    if factor < 1.0 {
        format!(
            "the last step's gradient shrinks ×{per_step} per step back in time: \
             after {steps} {step_word} it is {} of its size",
            format_magnitude(total)
        )
    } else if factor > 1.0 {
        format!(
            "the last step's gradient grows ×{per_step} per step back in time: \
             after {steps} {step_word} it is {} times its size",
            format_magnitude(total)
        )
    } else {
        "the last step's gradient keeps its size (×1 per step back in time)".to_string()
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

/// Two significant digits ("0.53", "4.5", "446"), or "1e-6" / "3e8" for sizes far from 1,
/// "more than 1e308" past f64's range.
fn format_magnitude(x: f64) -> String {
    if x.is_infinite() {
        "more than 1e308".to_string()
    } else if x == 0.0 {
        "less than 1e-308".to_string()
    } else if (0.01..1000.0).contains(&x) {
        let decimals = (1 - x.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.0e}")
    }
}
