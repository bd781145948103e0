//! From the paths' results to the report: the check (GPU against the reference), the
//! non-finite check of every path, and the figures derived from the times.

use std::collections::BTreeMap;

use super::CheckConfig;
use super::compute::{GpuPath, PathResult};
use super::report::{CheckReport, ClipReport, Timings};
use crate::diagnostics::{ReachCut, describe_profile, fit_growth_factor};
use crate::gpu::{AdapterSummary, Schedule};
use crate::model::{BpttResult, Problem, rel_err};
use crate::variant::GradientOptions;
use crate::variant::truncation::Truncation;

/// Names a result's non-finite entries, e.g. "grad_w_hh has 12 non-finite entries".
pub fn non_finite_problems(g: &BpttResult) -> Vec<String> {
    let mut out = Vec::new();
    for (name, v) in g.tensors() {
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            let mut line = format!("{name} has {bad} non-finite entr{}", if bad == 1 { "y" } else { "ies" });
            if name == "grad_h_norm" {
                // The backward pass runs from t = T down to 1: the first overflow in that
                // order is the largest t whose norm is not finite.
                if let Some(t) = v.iter().rposition(|x| !x.is_finite()) {
                    line.push_str(&format!("; ‖∂L/∂h_t‖ first overflows at step {} (counting down from T)", t + 1));
                }
            }
            out.push(line);
        }
    }
    out
}

/// The check: ‖gpu − ref‖/‖ref‖ per tensor (and for the reach profile), and one problem line
/// naming every tensor over the tolerance.
pub fn compare(gpu: &PathResult, reference: &PathResult, tolerance: f64) -> (BTreeMap<&'static str, f64>, Vec<String>) {
    let mut rel = BTreeMap::new();
    let mut over = Vec::new();
    let pairs = gpu.grads.tensors().into_iter().zip(reference.grads.tensors()).map(|((n, a), (_, b))| (n, a, b));
    for (name, a, b) in pairs.chain([("reach", &gpu.reach[..], &reference.reach[..])]) {
        let e = rel_err(a, b);
        if e.is_nan() || e > tolerance {
            over.push(format!("{name} ({})", crate::format::significant(e, 4)));
        }
        rel.insert(name, e);
    }
    let problems = if over.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "GPU against the reference: relative error over the tolerance {} in {}",
            crate::format::number(tolerance),
            over.join(", ")
        )]
    };
    (rel, problems)
}

/// Every path that ran, checked for non-finite values: a result with an overflow never passes,
/// compared or not. One line per path, with where it overflowed: in the forward pass, e.g.
/// "gpu: non-finite values in loss (1), grad_w_hh (4096); h_t overflows f32 at t = 1080: lower
/// --spectral-radius or --steps", else in the backward pass, "‖∂L/∂h_t‖ first overflows at step
/// 372 (counting down from T)". `loaded`: the problem came from a file (no such flags to lower).
pub fn non_finite_in(paths: &[(&str, Option<&PathResult>)], loaded: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (label, r) in paths {
        let Some(r) = r else { continue };
        let bad: Vec<String> = r
            .grads
            .tensors()
            .into_iter()
            .filter_map(|(name, v)| {
                let n = v.iter().filter(|x| !x.is_finite()).count();
                (n > 0).then(|| format!("{name} ({n})"))
            })
            .collect();
        if bad.is_empty() {
            continue;
        }
        let mut line = format!("{label}: non-finite values in {}", bad.join(", "));
        if let Some(overflow) = r.forward_overflow {
            let fix = if loaded {
                "scale down w_hh or shorten the sequence"
            } else {
                "lower `spectral_radius` or `steps` (or use `activation` tanh)"
            };
            line.push_str(&format!("; {}: {fix}", overflow.describe(r.precision)));
        } else if let Some(t) = r.grads.grad_h_norm.iter().rposition(|x| !x.is_finite()) {
            // The backward pass runs from t = T down to 1: the first overflow in that order
            // is the largest t whose norm is not finite.
            line.push_str(&format!("; ‖∂L/∂h_t‖ first overflows at step {} (counting down from T)", t + 1));
        }
        out.push(line);
    }
    out
}

/// What the report needs besides the result it describes.
pub struct Pieces {
    pub adapter: Option<AdapterSummary>,
    pub gpu: Option<GpuPathFacts>,
    pub cpu_repeat: Option<u32>,
    pub cpu_peak: Option<crate::cpu::fast::FmaPeak>,
    /// The untruncated reach profile, under randomised truncation.
    pub expected_reach: Option<Vec<f64>>,
    pub clip: Option<ClipReport>,
    pub rel_err: BTreeMap<&'static str, f64>,
    /// GPU and reference both ran and were compared.
    pub checked: bool,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub timings: Timings,
}

/// The GPU path's measurements, without its result.
pub struct GpuPathFacts {
    pub repeat: u32,
    pub stages: Vec<(&'static str, f64)>,
    pub timing_source: crate::gpu::TimingSource,
    pub dispatches: usize,
    pub memory: u64,
    pub floor_ms: f64,
}

impl GpuPathFacts {
    pub fn of(g: &GpuPath) -> Self {
        GpuPathFacts {
            repeat: g.repeat,
            stages: g.stages.clone(),
            timing_source: g.timing_source,
            dispatches: g.dispatches,
            memory: g.memory,
            floor_ms: g.floor_ms,
        }
    }
}

/// The report of `result` (from the path `from`) with the run's measurements.
pub fn report(
    c: &CheckConfig,
    p: &Problem,
    variant: &GradientOptions,
    result: &PathResult,
    from: &'static str,
    k: Pieces,
) -> CheckReport {
    let shape = p.shape;
    let grad_norms = result.grads.tensors().into_iter().filter(|(n, _)| n.starts_with("grad_") && *n != "grad_h_norm");
    let grad_norms = grad_norms.map(|(n, v)| (n, crate::model::norm(v))).collect();
    let fl = crate::flops::flops(shape);
    let t = k.timings;
    let gpu_total = t.gpu_total;
    let spectral_radius = crate::linalg::spectral_radius(&p.params.w_hh, shape.hidden);
    let nt = shape.steps;
    let (cut, reach_factor, expected_factor) = match variant.truncate {
        Some(Truncation::Regular(k)) if k < nt => {
            (ReachCut::Steps(k), fit_growth_factor(&result.reach[nt - k..]), None)
        }
        Some(Truncation::Random { p: cut, .. }) => {
            let expected = k.expected_reach.as_deref().and_then(fit_growth_factor);
            (ReachCut::Random(cut), expected, expected)
        }
        _ if variant.segments.is_some() => {
            let from = result.reach.iter().rposition(|&v| v == 0.0).map_or(0, |z| z + 1);
            (ReachCut::Segments, fit_growth_factor(&result.reach[from..]), None)
        }
        _ => (ReachCut::None, fit_growth_factor(&result.reach), None),
    };
    let floor = k.gpu.as_ref().map(|g| g.floor_ms);
    // Passed: compared and nothing wrong; failed: anything wrong; None: nothing to compare.
    let pass = if !k.problems.is_empty() { Some(false) } else { k.checked.then_some(true) };
    CheckReport {
        adapter: k.adapter,
        shape,
        activation: p.activation,
        loss_fn: p.loss_fn(),
        loss_at: p.loss_at,
        bias: p.has_bias(),
        seed: p.drawn.map(|d| d.seed),
        random_h0: p.drawn.is_some_and(|d| d.random_h0),
        compute: c.compute,
        variant: variant.describe(),
        spectral_radius,
        largest_singular_value: crate::linalg::largest_singular_value(&p.params.w_hh, shape.hidden),
        loss: result.grads.loss,
        result_from: from,
        grad_norms,
        grad_h_norm: result.grads.grad_h_norm.clone(),
        reach_summary: (!result.reach.is_empty()).then(|| {
            format!(
                "{} (spectral radius of w_hh: {})",
                describe_profile(&result.reach, cut, reach_factor, expected_factor),
                crate::format::significant(spectral_radius, 3)
            )
        }),
        reach: result.reach.clone(),
        reach_h0: result.reach_h0,
        problem: None,
        reach_factor,
        clip: k.clip,
        memory: None,
        rel_err: k.rel_err,
        tolerance: c.tolerance,
        checked: k.checked,
        pass,
        problems: k.problems,
        notes: k.notes,
        schedule: k.gpu.as_ref().map(|_| c.schedule.name()),
        gpu_stages_ms: k.gpu.as_ref().map(|g| g.stages.clone()).unwrap_or_default(),
        timing_source: k.gpu.as_ref().map(|g| g.timing_source),
        repeat: k.gpu.as_ref().map_or(0, |g| g.repeat),
        cpu_repeat: k.cpu_repeat,
        cpu_isa: t.cpu_total.map(|_| crate::cpu::fast::Isa::detect().name()),
        cpu_threads: t.cpu_total.map(|_| rayon::current_num_threads()),
        cpu_gflops: t.cpu_total.map(|ms| fl / (ms * 1e6)),
        cpu_peak_gflops: k.cpu_peak.map(|p| p.gflops),
        cpu_peak_fraction: k.cpu_peak.zip(t.cpu_total).map(|(p, ms)| fl / (ms * 1e6) / p.gflops),
        dispatches: k.gpu.as_ref().map(|g| g.dispatches),
        gpu_memory_bytes: k.gpu.as_ref().map(|g| g.memory),
        flops: fl,
        gpu_gflops: gpu_total.map(|ms| fl / (ms * 1e6)),
        gpu_gbps: gpu_total.map(|ms| {
            let bytes = match c.schedule {
                Schedule::Fused => crate::flops::bytes_fused(shape),
                Schedule::Stepwise => crate::flops::bytes_stepwise(shape),
            };
            bytes / (ms * 1e6)
        }),
        gpu_dispatch_floor_ms: floor,
        // The floor is empty dispatches as the passes record them: compare it with the passes.
        gpu_total_over_floor: floor
            .zip(t.gpu_forward.zip(t.gpu_backward))
            .map(|(f, (fw, bw))| (fw + bw) / f)
            .filter(|r| r.is_finite()),
        gpu_us_per_step: gpu_total.map(|ms| ms * 1e3 / shape.steps as f64),
        speedup_vs_cpu: match (t.cpu_total, gpu_total) {
            (Some(c), Some(g)) => Some(c / g),
            _ => None,
        },
        timings_ms: t,
        sweep: Vec::new(),
        result: None,
        cuts: None,
    }
}
