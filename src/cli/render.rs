//! The reports as text: the gradient check's report (every line is explained in
//! docs/report.md) and `bptt train`'s summary (docs/training.md).

use std::fmt::Write;

use bptt::format::{number, significant};
use bptt::gpu::TimingSource;
use bptt::{Activation, CheckReport, LossAt, TrainReport};

/// The gradient check's report, as the command prints it; `verbose` adds ‖∂L/∂h_t‖ and the
/// reach profile for every step.
pub fn check_text(r: &CheckReport, verbose: bool) -> String {
    CheckText(r).text(verbose)
}

struct CheckText<'a>(&'a CheckReport);

impl std::ops::Deref for CheckText<'_> {
    type Target = CheckReport;
    fn deref(&self) -> &CheckReport {
        self.0
    }
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

impl CheckText<'_> {
    /// The human-readable report: each number on a line that says what it is, with a short
    /// reading of the ones a learner cannot yet read (docs/gradients.md).
    pub fn text(&self, verbose: bool) -> String {
        let mut s = String::new();
        self.text_problem(&mut s);
        self.text_gradients(&mut s, verbose);
        self.text_sweep(&mut s);
        self.text_check(&mut s);
        self.text_memory(&mut s);
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
            if a.device_type.starts_with("CPU") {
                let _ = writeln!(
                    s,
                    "           a software adapter: the GPU code runs on this machine's CPU cores, checked as on any GPU, but its\n           \
                     times say nothing about GPU speed (`bptt train` uses the fast CPU path here)"
                );
            }
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
        if let (Some(first), Some(last)) = (self.reach.first(), self.reach.last()) {
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
        if let Some(f) = self.reach_factor {
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
        if verbose && !self.reach.is_empty() {
            for (t, v) in self.reach.iter().enumerate() {
                let _ = writeln!(s, "           reach t={:<5} {v:.6e}", t + 1);
            }
        }
        if let Some(c) = &self.clip {
            let _ = writeln!(
                s,
                "clip       global norm ‖g‖ {} before, {} after clipping to θ = {}",
                num(c.norm_before),
                num(c.norm_after),
                number(c.theta)
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
                "           {:>8} {:>12} {:>12} {:>12} {:>12} {:>13}  {}",
                number(r.radius),
                num(r.loss),
                num(r.grad_h_norm_first),
                num(r.grad_h_norm_last),
                num(r.reach_first),
                r.reach_factor.map_or("-".into(), |f| format!("×{}", num(f))),
                verdict(r.pass)
            );
        }
        let _ = writeln!(s, "           (the report above and below is the first radius's)");
    }

    fn text_check(&self, s: &mut String) {
        if !self.rel_err.is_empty() {
            let _ =
                writeln!(s, "check      GPU against the f64 reference, ‖gpu − ref‖/‖ref‖ ≤ {}", number(self.tolerance));
            for (k, v) in &self.rel_err {
                let ok = v.is_finite() && *v <= self.tolerance;
                let _ = writeln!(s, "  {k:<22} {:<9} {}", num(*v), if ok { "PASS" } else { "FAIL" });
            }
        }
        for p in &self.problems {
            let _ = writeln!(s, "PROBLEM    {p}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note       {n}");
        }
    }

    /// Checkpointing: what was held instead of every state, and what it cost in forward steps.
    fn text_memory(&self, s: &mut String) {
        let Some(m) = &self.memory else { return };
        let f = &m.figures;
        let bytes = bptt::format::human_bytes;
        let budget = f.budget_bytes.map(|b| format!(" (budget {})", bytes(b))).unwrap_or_default();
        let unit =
            if f.chunk_steps == 1 { "single steps".to_string() } else { format!("windows of {} steps", f.chunk_steps) };
        let _ = writeln!(
            s,
            "memory     exact BPTT with checkpoints ({}): {} states held at once, {unit}; {} held for what grows with T instead of {}{budget}",
            m.path,
            f.checkpoints,
            bytes(f.peak_bytes),
            bytes(f.full_bytes)
        );
        let _ = writeln!(
            s,
            "           forward steps {} (the fewest for these checkpoints and windows: {}; storing every state: {})",
            f.forward_steps, f.forward_steps_optimal, self.shape.steps
        );
        if let Some(r) = m.time_ratio {
            let _ = writeln!(s, "           time ×{} of the same path storing every state", significant(r, 3));
        }
        if let Some(why) = &m.automatic {
            let _ = writeln!(s, "           {why}");
        }
        for p in m.paths.iter().filter(|p| p.path != m.path) {
            let how = match (p.checkpoints, p.chunk_steps) {
                (Some(c), Some(l)) => format!("{c} states, units of {l}, {} forward steps", p.forward_steps),
                _ => "every state stored".to_string(),
            };
            let _ =
                writeln!(s, "  {:<8} {} held instead of {}: {how}", p.path, bytes(p.peak_bytes), bytes(p.full_bytes));
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
            let src = match self.timing_source {
                Some(TimingSource::Timestamp) => "GPU timestamp queries",
                _ if self.memory.as_ref().is_some_and(|m| m.path == "gpu") => {
                    "checkpointed: forward and backward interleave, the total is timed by the host clock"
                }
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
                let _ = writeln!(s, "  memory   {} of GPU buffers at the peak", bptt::format::human_bytes(bytes));
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
                "  rate     {} GFLOP/s, {} GB/s effective ({} GFLOP per run; FLOP and byte model in docs/design.md)",
                significant(self.gpu_gflops.unwrap_or(f64::NAN), 3),
                significant(self.gpu_gbps.unwrap_or(f64::NAN), 3),
                significant(self.flops / 1e9, 3)
            );
        }
        if t.cpu_total.is_some() {
            let isa = match self.cpu_isa {
                Some("avx512") => "AVX-512",
                Some("avx2") => "AVX2",
                _ => "portable loops",
            };
            let peak = match (self.cpu_peak_gflops, self.cpu_peak_fraction) {
                (Some(p), Some(f)) => format!(
                    ", {}% of this machine's measured FMA peak ({} GFLOP/s)",
                    significant(100.0 * f, 3),
                    significant(p, 3)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  cpu      fast f32 path {}, {} GFLOP/s on {} threads ({isa}){peak}",
                ms(t.cpu_total),
                significant(self.cpu_gflops.unwrap_or(f64::NAN), 3),
                self.cpu_threads.unwrap_or(0)
            );
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

/// `bptt train`'s summary.
pub fn train_text(r: &TrainReport) -> String {
    TrainText(r).text()
}

struct TrainText<'a>(&'a TrainReport);

impl std::ops::Deref for TrainText<'_> {
    type Target = TrainReport;
    fn deref(&self) -> &TrainReport {
        self.0
    }
}

impl TrainText<'_> {
    fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "task         {} (T={} B={} d={} h={} q={}), on {}",
            self.task, self.steps, self.batch, self.input, self.hidden, self.output, self.device
        ));
        let truncate = self.truncate.as_ref().map(|t| match t {
            serde_json::Value::String(s) => format!(", truncated {s} (cuts seed {})", self.truncate_seed.unwrap_or(0)),
            k => format!(", truncated to K = {k}"),
        });
        let extra: Vec<String> =
            [self.clip.map(|c| format!(", clip {}", number(c))), truncate].into_iter().flatten().collect();
        // Where the weights came from: a file, or the initialisation.
        let start = match (&self.init_from, self.init_scale) {
            (Some(file), _) => format!("weights from {}", bptt::error::one_line(file)),
            (None, scale) => format!("w_hh init {} ×{}", self.init_recurrent, number(scale.unwrap_or(f64::NAN))),
        };
        line(format!(
            "model        {} RNN, {start}; {} lr {}{}",
            self.activation,
            self.optimizer,
            number(self.lr),
            extra.join("")
        ));
        for n in &self.notes {
            line(format!("note         {n}"));
        }
        if let Some(m) = &self.memory {
            let bytes = bptt::format::human_bytes;
            line(format!(
                "memory       exact BPTT with checkpoints: {} states held, units of {} steps, {} held for what grows \
                 with T instead of {}; {} forward steps per iteration ({} storing every state)",
                m.checkpoints,
                m.chunk_steps,
                bytes(m.peak_bytes),
                bytes(m.full_bytes),
                m.forward_steps,
                self.steps
            ));
        }
        self.evaluations(&mut line);
        let e = &self.final_eval;
        line(format!(
            "result       after {} iteration{}: train {} {}, held-out {} (memoryless baseline {})",
            self.iters,
            if self.iters == 1 { "" } else { "s" },
            self.metric,
            num(self.final_train),
            num(e.loss),
            num(self.baseline)
        ));
        if let Some(acc) = e.accuracy {
            line(format!("accuracy     {:.1}% of the recalled symbols (chance 12.5%)", 100.0 * acc));
        }
        if let Some(p) = e.perplexity {
            line(format!("perplexity   {} held-out (baseline {})", num(p), num(self.baseline.exp())));
        }
        if let Some(big) = self.spikes.iter().max_by(|a, b| a.train.total_cmp(&b.train)) {
            let n = self.spikes.len();
            line(format!(
                "spikes       {n} spike{} above {}× the running loss, the largest at iteration {} ({} {} after {})",
                if n == 1 { "" } else { "s" },
                bptt::train::SPIKE_FACTOR,
                big.iter,
                self.metric,
                significant(big.train, 3),
                significant(big.running, 3)
            ));
        }
        line(format!(
            "time         {} s ({} s of it held-out evaluation), {} sequences/s",
            significant(self.seconds, 3),
            significant(self.eval_seconds, 3),
            num(self.sequences_per_s)
        ));
        if let Some(s) = &self.sample {
            line(format!("sample       {s:?}"));
        }
        line(format!("verdict      {}", self.verdict));
        out
    }

    /// One row per held-out evaluation: the metric, and what BPTT did since the last one (‖g‖
    /// before clipping, the iterations clipped, the reach of the last step's gradient).
    fn evaluations(&self, line: &mut impl FnMut(String)) {
        let extra = if self.final_eval.accuracy.is_some() {
            Some("recalled")
        } else if self.final_eval.perplexity.is_some() {
            Some("perplexity")
        } else {
            None
        };
        let held = format!("held-out {}", self.metric);
        let mut head = format!("evaluations  {:>6}  {held:>12}", "iter");
        if let Some(x) = extra {
            head.push_str(&format!("  {x:>10}"));
        }
        head.push_str(&format!("  {:>10}  {:>8}  {:>12}", "‖g‖", "clipped", "reach/step"));
        line(head);
        for e in &self.eval {
            let mut row = format!("             {:>6}  {:>12}", e.iter, num(e.loss));
            if let Some(a) = e.accuracy {
                row.push_str(&format!("  {:>9.1}%", 100.0 * a));
            } else if let Some(p) = e.perplexity {
                row.push_str(&format!("  {:>10}", num(p)));
            }
            let clipped = e.clipped_fraction.map_or("-".to_string(), |f| format!("{:.0}%", 100.0 * f));
            let reach = e.reach_factor.map_or("-".to_string(), |f| format!("×{f:.4}"));
            row.push_str(&format!("  {:>10}  {clipped:>8}  {reach:>12}", significant(e.grad_norm, 3)));
            line(row);
        }
        line(
            "             (‖g‖: the gradient's global norm before clipping, averaged since the last evaluation; reach/step: how the\n             \
             last step's gradient ‖∂L_T/∂h_t‖ changes per step back in time on a held-out batch, below 1 vanishing)"
                .to_string(),
        );
    }
}
