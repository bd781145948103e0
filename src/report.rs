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
    /// h0 ~ N(0,1) (`--random-h0`) instead of zeros; false for a loaded problem.
    pub random_h0: bool,
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
    /// One line per thing the run left out that the arguments might suggest it did (e.g. the
    /// fast CPU path under --truncate, --segments or --clip).
    pub notes: Vec<String>,
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

/// A time in milliseconds with four significant digits ("812.3 ms", "0.02134 ms").
fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{} ms", significant(x, 4)),
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

/// A gradient norm or a ratio of two: four significant digits.
fn num(v: f64) -> String {
    significant(v, 4)
}

impl Report {
    /// The human-readable report: each number on a line that says what it is, with a short
    /// reading of the ones a learner cannot yet read (README, "Seeing vanishing and exploding
    /// gradients").
    pub fn text(&self, verbose: bool) -> String {
        let mut s = String::new();
        self.text_problem(&mut s);
        self.text_gradients(&mut s, verbose);
        self.text_sweep(&mut s);
        self.text_check(&mut s);
        self.text_timings(&mut s);
        let _ = writeln!(s, "result     {}", verdict(self.pass));
        s
    }

    /// The problem, the variant, and what w_hh's spectrum says about the gradients.
    fn text_problem(&self, s: &mut String) {
        let _ = writeln!(s, "bptt: backpropagation through time, {}", self.shape);
        let h0 = match (self.random_h0, self.seed) {
            (true, _) => ", h0 ~ N(0,1) (--random-h0)",
            (false, Some(_)) => ", h0 = 0",
            (false, None) => "",
        };
        let _ = writeln!(
            s,
            "problem    {} activation, {} loss at {}, {}{}{h0}",
            self.activation.name(),
            self.loss_fn.name(),
            if self.loss_at == LossAt::All { "every step" } else { "the last step" },
            if self.bias { "with biases" } else { "no biases" },
            self.seed.map(|x| format!(", seed {x}")).unwrap_or_default()
        );
        for v in &self.variant {
            let _ = writeln!(s, "variant    {v}");
        }
        let (rho, sigma) = (self.spectral_radius, self.largest_singular_value);
        let _ = writeln!(
            s,
            "w_hh       spectral radius ρ = {} (growth-rate estimate), largest singular value σ_max = {}",
            significant(rho, 4),
            significant(sigma, 4)
        );
        // |ρ − 1| below 1%: neither effect shows within a few hundred steps.
        let reading = if rho < 0.99 {
            "ρ < 1: each step back multiplies a far loss term's contribution by about ρ, so it vanishes (vanishing gradients)"
        } else if rho > 1.01 {
            "ρ > 1: each step back multiplies a far loss term's contribution by about ρ, so it explodes (exploding gradients)"
        } else {
            "ρ ≈ 1: far loss terms' contributions neither vanish nor explode quickly"
        };
        let _ = writeln!(s, "           {reading}");
        let _ =
            writeln!(s, "           σ_max bounds what one step back can do: stretch the gradient by at most ×σ_max");
        if self.activation == Activation::Tanh {
            let _ = writeln!(
                s,
                "           with tanh each step also multiplies by φ′(a_t) = 1 − h_t² ≤ 1: expect a per-step factor below ρ"
            );
        }
        if let Some(a) = &self.adapter {
            let _ = writeln!(s, "adapter    {a}");
        }
    }

    /// The loss, the gradients' sizes, ‖∂L/∂h_t‖, the reach profile and clipping.
    fn text_gradients(&self, s: &mut String, verbose: bool) {
        let _ = writeln!(s, "loss       L = {} (from {})", significant(self.loss, 7), self.result_from);
        let norms: Vec<String> = self.grad_norms.iter().map(|(k, v)| format!("‖{k}‖ {}", num(*v))).collect();
        let _ = writeln!(s, "gradients  {}", norms.join(", "));
        let g = &self.grad_h_norm;
        if let (Some(first), Some(last)) = (g.first(), g.last()) {
            let _ = writeln!(
                s,
                "‖∂L/∂h_t‖  t=1: {}, t=T: {}, ratio first/last {}",
                num(*first),
                num(*last),
                num(first / last)
            );
            let _ = match self.loss_at {
                LossAt::All => writeln!(
                    s,
                    "           every step has its own loss term, a step or two from h_t: ‖∂L/∂h_t‖ does not vanish even when\n           far terms do; the reach line below is the one to watch"
                ),
                LossAt::Last => writeln!(
                    s,
                    "           only the last step has a loss term: this is the reach profile below, and it vanishes or explodes with t"
                ),
            };
        }
        if verbose {
            for (t, v) in g.iter().enumerate() {
                let _ = writeln!(s, "           t={:<5} {v:.6e}", t + 1);
            }
        }
        if let (Some(first), Some(last)) = (self.grad_h_norm_from_last.first(), self.grad_h_norm_from_last.last()) {
            let _ = writeln!(
                s,
                "reach      ‖∂L_T/∂h_t‖ (the last step's loss alone) t=1: {}, t=T: {}",
                num(*first),
                num(*last)
            );
        }
        if let Some(summary) = &self.reach_summary {
            let _ = writeln!(s, "           {summary}");
        }
        if let Some(f) = self.reach_growth_factor {
            let word = if f < 0.99 {
                Some("vanishing gradients: the further back a step, the less the last step's loss moves it")
            } else if f > 1.01 {
                Some(
                    "exploding gradients: the further back a step, the more the last step's loss moves it (see --clip)",
                )
            } else {
                None
            };
            if let Some(w) = word {
                let _ = writeln!(s, "           {w}");
            }
        }
        if verbose && !self.grad_h_norm_from_last.is_empty() {
            for (t, v) in self.grad_h_norm_from_last.iter().enumerate() {
                let _ = writeln!(s, "           reach t={:<5} {v:.6e}", t + 1);
            }
        }
        if let Some(c) = &self.clip {
            let _ = writeln!(
                s,
                "clip       global norm ‖g‖ {} before, {} after clipping to θ = {}",
                num(c.norm_before),
                num(c.norm_after),
                c.theta
            );
        }
    }

    fn text_sweep(&self, s: &mut String) {
        if self.sweep.is_empty() {
            return;
        }
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

    fn text_check(&self, s: &mut String) {
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
        for n in &self.notes {
            let _ = writeln!(s, "note       {n}");
        }
    }

    /// The speed section: how many runs, what each path took, and what the GPU's numbers mean.
    fn text_timings(&self, s: &mut String) {
        let t = &self.timings_ms;
        let mut counts = Vec::new();
        if t.gpu_total.is_some() {
            counts.push(match self.repeat {
                1 => "GPU: one timed run after a warm-up".to_string(),
                n => format!("GPU: median of {n} runs after a warm-up"),
            });
        }
        if let Some(n) = self.cpu_repeat {
            counts.push(match n {
                1 => "fast CPU path: one timed run after a warm-up".to_string(),
                n => format!("fast CPU path: median of {n} after a warm-up"),
            });
        }
        if t.cpu_ref_total.is_some() {
            counts.push("reference: one run".into());
        }
        let _ = writeln!(s, "timings    {}", counts.join("; "));
        if let Some(total) = t.gpu_total {
            if let Some(a) = self.adapter.as_ref().filter(|a| a.device_type.starts_with("CPU")) {
                let _ = writeln!(
                    s,
                    "  note     software adapter {}: it runs on this machine's CPU cores, its times say nothing about GPU speed",
                    a.name
                );
            }
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
                let st: Vec<String> = self.gpu_stages_ms.iter().map(|(n, v)| format!("{n} {}", num(*v))).collect();
                let _ = writeln!(s, "  stages   {} (ms)", st.join(", "));
            }
            let spread = match (t.gpu_total_min, t.gpu_total_max) {
                (Some(lo), Some(hi)) if self.repeat > 1 => format!(" (min {}, max {})", ms(Some(lo)), ms(Some(hi))),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  total    {} schedule: {}{spread} upload to readback, {} µs/step, {} dispatches",
                self.schedule.unwrap_or("-"),
                ms(Some(total)),
                significant(self.gpu_us_per_step.unwrap_or(f64::NAN), 4),
                self.dispatches.unwrap_or(0)
            );
            if let Some(bytes) = self.gpu_memory_bytes {
                let _ =
                    writeln!(s, "  memory   {} of GPU buffers at the peak", crate::gpu::buffers::human_bytes(bytes));
            }
            if let (Some(f), Some(r)) = (self.gpu_dispatch_floor_ms, self.gpu_total_over_floor) {
                let _ = writeln!(
                    s,
                    "  floor    2T = {} empty dispatches: {} ({} µs/step); forward + backward is {}× the floor",
                    2 * self.shape.steps,
                    ms(Some(f)),
                    significant(f * 1e3 / self.shape.steps as f64, 3),
                    significant(r, 3)
                );
            }
            let _ = writeln!(
                s,
                "  rate     {} GFLOP/s, {} GB/s effective ({} GFLOP per run; FLOP and byte model in README)",
                significant(self.gpu_gflops.unwrap_or(f64::NAN), 3),
                significant(self.gpu_gbps.unwrap_or(f64::NAN), 3),
                significant(self.flops / 1e9, 3)
            );
        }
        if t.cpu_total.is_some() {
            let _ = writeln!(s, "  cpu      fast f32 path {}", ms(t.cpu_total));
        }
        if t.cpu_ref_total.is_some() {
            let _ = writeln!(s, "  cpu-ref  f64 reference {} (one run)", ms(t.cpu_ref_total));
        }
        if let Some(x) = self.speedup_vs_cpu {
            let faster = if x < 1.0 { " (below 1: the fast CPU path is faster here)" } else { "" };
            let _ = writeln!(s, "speedup    GPU total vs fast CPU path: {}×{faster}", significant(x, 3));
        }
    }
}

/// `v` with `digits` significant digits: plainly from 0.001 up to where the digits run out
/// ("0.754", "2.29", "812.3", "567072" with 6 or more), in scientific notation outside
/// ("5.67e5", "3.10e-13"); "0", "inf", "NaN" as such.
pub fn significant(v: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if !v.is_finite() || v == 0.0 {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-3..digits as i32).contains(&magnitude) {
        let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.*e}", digits - 1)
    }
}
