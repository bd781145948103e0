//! The report of one run: built by `run`, printed as text or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::cli::Compute;
use crate::gpu::{AdapterSummary, TimingSource};
use crate::model::{Activation, LossAt, LossFn, Shape};

/// Median times in milliseconds; `None` for what did not run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub gpu_setup: Option<f64>,
    pub gpu_upload: Option<f64>,
    pub gpu_forward: Option<f64>,
    pub gpu_backward: Option<f64>,
    pub gpu_readback: Option<f64>,
    pub gpu_total: Option<f64>,
    pub gpu_total_min: Option<f64>,
    pub gpu_total_max: Option<f64>,
    pub cpu_total: Option<f64>,
    pub cpu_ref_total: Option<f64>,
}

/// Gradient clipping: θ and the global norm before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ClipReport {
    pub theta: f64,
    pub norm_before: f64,
    pub norm_after: f64,
}

/// One radius of `--sweep-radius`.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow {
    pub radius: f64,
    pub loss: f64,
    pub grad_h_norm_first: f64,
    pub grad_h_norm_last: f64,
    pub reach_first: f64,
    pub reach_growth_factor: Option<f64>,
    /// As `Report::pass`: null when nothing was compared and nothing failed.
    pub pass: Option<bool>,
    pub grad_h_norm: Vec<f64>,
    pub grad_h_norm_from_last: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub adapter: Option<AdapterSummary>,
    pub shape: Shape,
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
    pub seed: Option<u64>,
    pub compute: Compute,
    /// What is computed beyond plain BPTT (truncation, segments, clipping), one line each.
    pub variant: Vec<String>,
    /// Spectral radius of w_hh (growth-rate power-iteration estimate).
    pub spectral_radius: f64,
    /// Largest singular value of w_hh (power iteration on w_hhᵀw_hh).
    pub largest_singular_value: f64,
    /// L, from the GPU when it ran, else from the CPU path that ran.
    pub loss: f64,
    /// Which path `loss`, `grad_norms` and `grad_h_norm` come from.
    pub result_from: &'static str,
    /// ‖·‖ of each gradient tensor.
    pub grad_norms: BTreeMap<&'static str, f64>,
    /// ‖∂L/∂h_t‖ for t = 1..T.
    pub grad_h_norm: Vec<f64>,
    /// The reach profile ‖∂L_T/∂h_t‖ for t = 1..T: the last step's loss alone.
    pub grad_h_norm_from_last: Vec<f64>,
    /// Per-step factor of the reach profile going back in time (log-linear fit).
    pub reach_growth_factor: Option<f64>,
    /// That factor in one sentence, next to the spectral radius.
    pub reach_summary: Option<String>,
    /// Gradient clipping, when asked for.
    pub clip: Option<ClipReport>,
    /// ‖gpu − ref‖/‖ref‖ per tensor (when both ran).
    pub rel_err: BTreeMap<&'static str, f64>,
    pub tolerance: f64,
    /// Whether two paths were compared (the GPU against the f64 reference).
    pub checked: bool,
    /// true: compared, every tensor within the tolerance and every result finite; false: a
    /// tensor over the tolerance or a non-finite result on any path (exit 1); null: nothing
    /// was compared (one path ran) and its result is finite.
    pub pass: Option<bool>,
    /// One line per problem found (non-finite results, failed checks).
    pub problems: Vec<String>,
    pub timings_ms: Timings,
    /// GPU schedule (`fused` or `stepwise`).
    pub schedule: Option<&'static str>,
    /// Median GPU time of each stage, in schedule order, where the adapter writes timestamps
    /// inside passes.
    pub gpu_stages_ms: Vec<(&'static str, f64)>,
    pub timing_source: Option<TimingSource>,
    /// Timed GPU runs behind each GPU median (after one warm-up run); 0 when no GPU ran.
    pub repeat: u32,
    /// Timed runs of the fast CPU path behind its median (after one warm-up run).
    pub cpu_repeat: Option<u32>,
    pub dispatches: Option<usize>,
    pub gpu_memory_bytes: Option<u64>,
    pub flops: f64,
    pub gpu_gflops: Option<f64>,
    pub gpu_gbps: Option<f64>,
    pub gpu_us_per_step: Option<f64>,
    /// 2T empty dispatches (in passes of at most 4096): the latency floor of one dispatch per step each way.
    pub gpu_dispatch_floor_ms: Option<f64>,
    /// The GPU's forward + backward passes over that floor (1 would mean the kernels cost
    /// nothing beyond launching them).
    pub gpu_total_over_floor: Option<f64>,
    /// Fast CPU path's time over the GPU's (> 1: the GPU is faster).
    pub speedup_vs_cpu: Option<f64>,
    /// `--sweep-radius`: one row per radius (the rest of the report is the first radius's).
    pub sweep: Vec<SweepRow>,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3} ms"),
        _ => "-".into(),
    }
}

/// PASS, FAIL, or "not checked" when only one path ran (its result is finite).
fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "not checked",
    }
}

impl Report {
    /// The human-readable report.
    pub fn text(&self, verbose: bool) -> String {
        let mut s = String::new();
        let sh = self.shape;
        let _ = writeln!(s, "bptt: backpropagation through time, {sh}");
        let _ = writeln!(
            s,
            "problem    {} activation, {} loss at {}, {}{}",
            self.activation.name(),
            self.loss_fn.name(),
            if self.loss_at == LossAt::All { "every step" } else { "the last step" },
            if self.bias { "with biases" } else { "no biases" },
            self.seed.map(|x| format!(", seed {x}")).unwrap_or_default()
        );
        for v in &self.variant {
            let _ = writeln!(s, "variant    {v}");
        }
        let _ = writeln!(
            s,
            "w_hh       spectral radius {:.4} (growth-rate estimate), largest singular value {:.4}",
            self.spectral_radius, self.largest_singular_value
        );
        if let Some(a) = &self.adapter {
            let _ = writeln!(s, "adapter    {a}");
        }
        let _ = writeln!(s, "loss       {:.9} (from {})", self.loss, self.result_from);
        let norms: Vec<String> = self.grad_norms.iter().map(|(k, v)| format!("‖{k}‖ {v:.4e}")).collect();
        let _ = writeln!(s, "gradients  {}", norms.join(", "));
        let g = &self.grad_h_norm;
        if let (Some(first), Some(last)) = (g.first(), g.last()) {
            let _ = writeln!(s, "‖∂L/∂h_t‖  t=1: {first:.4e}, t=T: {last:.4e}, ratio first/last {:.4e}", first / last);
        }
        if verbose {
            for (t, v) in g.iter().enumerate() {
                let _ = writeln!(s, "           t={:<5} {v:.6e}", t + 1);
            }
        }
        if let (Some(first), Some(last)) = (self.grad_h_norm_from_last.first(), self.grad_h_norm_from_last.last()) {
            let _ = writeln!(s, "reach      ‖∂L_T/∂h_t‖ (last step's loss alone) t=1: {first:.4e}, t=T: {last:.4e}");
        }
        if let Some(summary) = &self.reach_summary {
            let _ = writeln!(s, "           {summary}");
        }
        if verbose && !self.grad_h_norm_from_last.is_empty() {
            for (t, v) in self.grad_h_norm_from_last.iter().enumerate() {
                let _ = writeln!(s, "           reach t={:<5} {v:.6e}", t + 1);
            }
        }
        if let Some(c) = &self.clip {
            let _ = writeln!(
                s,
                "clip       global norm ‖g‖ {:.4e} before, {:.4e} after clipping to θ = {}",
                c.norm_before, c.norm_after, c.theta
            );
        }
        if !self.sweep.is_empty() {
            let _ = writeln!(
                s,
                "sweep      {:>8} {:>12} {:>12} {:>12} {:>12} {:>13}  check",
                "radius", "loss", "‖∂L/∂h_1‖", "‖∂L/∂h_T‖", "reach t=1", "reach factor"
            );
            for r in &self.sweep {
                let _ = writeln!(
                    s,
                    "           {:>8} {:>12.4e} {:>12.4e} {:>12.4e} {:>12.4e} {:>13}  {}",
                    r.radius,
                    r.loss,
                    r.grad_h_norm_first,
                    r.grad_h_norm_last,
                    r.reach_first,
                    r.reach_growth_factor.map_or("-".into(), |f| format!("×{f:.4}")),
                    verdict(r.pass)
                );
            }
            let _ = writeln!(s, "           (the report above and below is the first radius's)");
        }
        if !self.rel_err.is_empty() {
            let _ = writeln!(s, "check      GPU against the f64 reference, ‖gpu − ref‖/‖ref‖ ≤ {:e}", self.tolerance);
            for (k, v) in &self.rel_err {
                let ok = v.is_finite() && *v <= self.tolerance;
                let _ = writeln!(s, "  {k:<22} {v:.3e}  {}", if ok { "PASS" } else { "FAIL" });
            }
        }
        for p in &self.problems {
            let _ = writeln!(s, "PROBLEM    {p}");
        }
        let t = &self.timings_ms;
        let mut counts = Vec::new();
        if self.timings_ms.gpu_total.is_some() {
            counts.push(format!("GPU: median of {} run(s) after a warm-up", self.repeat));
        }
        if let Some(n) = self.cpu_repeat {
            counts.push(format!("fast CPU path: median of {n} after a warm-up"));
        }
        if self.timings_ms.cpu_ref_total.is_some() {
            counts.push("reference: one run".into());
        }
        let _ = writeln!(s, "timings    {}", counts.join("; "));
        if t.gpu_total.is_some() {
            let src = match self.timing_source {
                Some(TimingSource::Timestamp) => "GPU timestamp queries",
                _ => "host clock",
            };
            let _ = writeln!(
                s,
                "  gpu      setup {}, upload {}, forward {}, backward {} ({src}), readback {}",
                ms(t.gpu_setup),
                ms(t.gpu_upload),
                ms(t.gpu_forward),
                ms(t.gpu_backward),
                ms(t.gpu_readback)
            );
            if !self.gpu_stages_ms.is_empty() {
                let st: Vec<String> = self.gpu_stages_ms.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
                let _ = writeln!(s, "  stages   {} (ms)", st.join(", "));
            }
            let _ = writeln!(
                s,
                "  gpu      {} schedule: total {} (min {}, max {}), {:.1} µs/step, {} dispatches",
                self.schedule.unwrap_or("-"),
                ms(t.gpu_total),
                ms(t.gpu_total_min),
                ms(t.gpu_total_max),
                self.gpu_us_per_step.unwrap_or(f64::NAN),
                self.dispatches.unwrap_or(0)
            );
            if let Some(bytes) = self.gpu_memory_bytes {
                let _ =
                    writeln!(s, "  memory   {} of GPU buffers at the peak", crate::gpu::buffers::human_bytes(bytes));
            }
            if let (Some(f), Some(r)) = (self.gpu_dispatch_floor_ms, self.gpu_total_over_floor) {
                let _ = writeln!(
                    s,
                    "  floor    2T = {} empty dispatches: {f:.3} ms ({:.1} µs/step); forward + backward is {r:.1}× the floor",
                    2 * self.shape.steps,
                    f * 1e3 / self.shape.steps as f64
                );
            }
            let _ = writeln!(
                s,
                "  gpu      {:.2} GFLOP/s, {:.2} GB/s effective ({:.3} GFLOP per run; FLOP and byte model in README)",
                self.gpu_gflops.unwrap_or(f64::NAN),
                self.gpu_gbps.unwrap_or(f64::NAN),
                self.flops / 1e9
            );
        }
        if t.cpu_total.is_some() {
            let _ = writeln!(s, "  cpu      fast f32 path {}", ms(t.cpu_total));
        }
        if t.cpu_ref_total.is_some() {
            let _ = writeln!(s, "  cpu-ref  f64 reference {} (one run)", ms(t.cpu_ref_total));
        }
        if let Some(x) = self.speedup_vs_cpu {
            let _ = writeln!(s, "speedup    GPU total vs fast CPU path: {x:.2}×");
        }
        let _ = writeln!(s, "result     {}", verdict(self.pass));
        s
    }
}
