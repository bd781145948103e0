//! The engines' layer mode (docs/model.md, "The layer mode"): the f64 reference's against the
//! full model's reference and against finite differences, then the fast CPU path and the GPU
//! (both schedules, both recurrent_step layouts, every written buffer poisoned first) against
//! the reference.

mod common;

use bptt::cpu::{reference, reference_layer};
use bptt::gpu::{GpuBptt, GpuContext, Schedule};
use bptt::layer::{Layer, LayerDevice, LayerGrads, LayerShape, LayerWeights, Upstream};
use bptt::model::{Activation, Shape, rel_err};
use bptt::problem::{ProblemSpec, random_problem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACTIVATIONS: [Activation; 3] = [Activation::Identity, Activation::Tanh, Activation::Relu];

/// A layer problem with every tensor drawn from a seeded generator: weights ~ U(±1/√h) as
/// torch.nn.RNN draws them (scaled up for relu so some units are off), x, h0 and the upstream
/// gradients ~ U(±1).
struct Case {
    s: LayerShape,
    act: Activation,
    w_hx: Vec<f64>,
    w_hh: Vec<f64>,
    b_h: Option<Vec<f64>>,
    x: Vec<f64>,
    h0: Option<Vec<f64>>,
    grad_h: Vec<f64>,
    grad_h_last: Option<Vec<f64>>,
}

impl Case {
    fn new(s: LayerShape, act: Activation, bias: bool, with_h0: bool, with_last: bool, seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let k = 1.0 / (s.hidden as f64).sqrt();
        let mut u = |n: usize, a: f64| (0..n).map(|_| r.random_range(-a..a)).collect::<Vec<f64>>();
        let (t, b, d, h) = (s.steps, s.batch, s.input, s.hidden);
        Case {
            s,
            act,
            w_hx: u(h * d, k),
            w_hh: u(h * h, k),
            b_h: bias.then(|| u(h, k)),
            x: u(t * b * d, 1.0),
            h0: with_h0.then(|| u(b * h, 1.0)),
            grad_h: u(t * b * h, 1.0),
            grad_h_last: with_last.then(|| u(b * h, 1.0)),
        }
    }

    fn w(&self) -> LayerWeights<'_, f64> {
        LayerWeights { w_hx: &self.w_hx, w_hh: &self.w_hh, b_h: self.b_h.as_deref() }
    }

    fn h0(&self) -> Vec<f64> {
        self.h0.clone().unwrap_or_else(|| vec![0.0; self.s.batch * self.s.hidden])
    }

    /// The reference's states and gradients.
    fn reference(&self) -> (Vec<f64>, LayerGrads<f64>) {
        let h0 = self.h0();
        let h = reference_layer::forward(self.s, self.act, &self.w(), &self.x, &h0);
        let up = Upstream { h: &h, grad_h: &self.grad_h, grad_h_last: self.grad_h_last.as_deref() };
        let g = reference_layer::backward(self.s, self.act, &self.w(), &self.x, &h0, &up);
        (h, g)
    }

    /// L = Σ_t ⟨g_t, h_t⟩ (+ ⟨g_last, h_T⟩): the loss whose upstream gradients are the case's.
    fn loss(&self, x: &[f64], h0: &[f64]) -> f64 {
        let h = reference_layer::forward(self.s, self.act, &self.w(), x, h0);
        let bh = self.s.batch * self.s.hidden;
        let mut l: f64 = h.iter().zip(&self.grad_h).map(|(a, b)| a * b).sum();
        if let Some(last) = &self.grad_h_last {
            l += h[h.len() - bh..].iter().zip(last).map(|(a, b)| a * b).sum::<f64>();
        }
        l
    }

    fn what(&self) -> String {
        format!(
            "{} {:?} bias={} h0={} last={}",
            self.s,
            self.act,
            self.b_h.is_some(),
            self.h0.is_some(),
            self.grad_h_last.is_some()
        )
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts every gradient (and the states) of an f32 path within `tol` of the reference's.
fn assert_close(what: &str, h: &[f32], g: &LayerGrads<f32>, want: &(Vec<f64>, LayerGrads<f64>), tol: f64) -> f64 {
    let (rh, rg) = want;
    let mut pairs = vec![
        ("h", f64s(h), rh.clone()),
        ("grad_x", f64s(&g.grad_x), rg.grad_x.clone()),
        ("grad_h0", f64s(&g.grad_h0), rg.grad_h0.clone()),
        ("grad_w_hx", f64s(&g.grad_w_hx), rg.grad_w_hx.clone()),
        ("grad_w_hh", f64s(&g.grad_w_hh), rg.grad_w_hh.clone()),
    ];
    assert_eq!(g.grad_b_h.is_some(), rg.grad_b_h.is_some(), "{what}: grad_b_h present on one side only");
    if let (Some(a), Some(b)) = (&g.grad_b_h, &rg.grad_b_h) {
        pairs.push(("grad_b_h", f64s(a), b.clone()));
    }
    let mut worst: f64 = 0.0;
    for (name, got, want) in pairs {
        assert_eq!(got.len(), want.len(), "{what}: {name} length");
        assert!(got.iter().all(|v| v.is_finite()), "{what}: {name} has non-finite entries");
        let e = rel_err(&got, &want);
        assert!(e <= tol, "{what}: {name} relative error {e:.3e} > {tol:e}");
        worst = worst.max(e);
    }
    worst
}

/// Shapes with T = 1 and T > 1, B = 1, odd B and B ≥ 4 (the fast path's tile kernel), hidden
/// sizes that are not multiples of any block or workgroup size, d = 1 and d > h.
fn grid() -> Vec<Case> {
    let shapes = [(1, 1, 1, 1), (5, 1, 3, 33), (7, 3, 40, 17), (4, 5, 2, 130), (9, 4, 6, 64)];
    let mut cases = Vec::new();
    for (n, &(t, b, d, h)) in shapes.iter().enumerate() {
        for (m, act) in ACTIVATIONS.into_iter().enumerate() {
            let s = LayerShape::new(t, b, d, h).unwrap();
            let k = n * 3 + m;
            cases.push(Case::new(s, act, k % 2 == 0, k % 3 != 0, k % 4 != 1, k as u64));
        }
    }
    cases
}

/// The layer mode is the full model's backward pass with the output side cut off: given the
/// upstream gradients g_t = ∂L/∂o_t·w_qh of a full problem, the layer's gradients are the full
/// reference's, and its states are the full forward's.
#[test]
fn the_reference_layer_is_the_full_reference_without_the_output_side() {
    for (k, act) in ACTIVATIONS.into_iter().enumerate() {
        let mut spec = ProblemSpec::new(Shape::new(6, 3, 4, 9, 5).unwrap());
        (spec.activation, spec.bias, spec.random_h0, spec.seed) = (act, k != 1, k != 2, k as u64);
        let p = random_problem(&spec).unwrap();
        let full = reference::bptt(&p);
        let fwd = reference::forward(&p);
        let (_, grad_o) = reference::loss_and_grad_o(&p, &fwd.o);
        let (h, q) = (p.shape.hidden, p.shape.output);
        // g_t = ∂L/∂o_t·w_qh, row by row.
        let w_qh = &p.params.w_qh;
        let grad_h: Vec<f64> = grad_o
            .chunks(q)
            .flat_map(|go| (0..h).map(move |i| (0..q).map(|k| go[k] * w_qh[k * h + i]).sum::<f64>()))
            .collect();
        let s = LayerShape::new(6, 3, 4, 9).unwrap();
        let w = LayerWeights { w_hx: &p.params.w_hx, w_hh: &p.params.w_hh, b_h: p.params.b_h.as_deref() };
        let states = reference_layer::forward(s, act, &w, &p.x, &p.h0);
        assert_eq!(states, fwd.h, "{act:?}: the states");
        let up = Upstream { h: &states, grad_h: &grad_h, grad_h_last: None };
        let g = reference_layer::backward(s, act, &w, &p.x, &p.h0, &up);
        for (name, got, want) in [
            ("grad_w_hx", &g.grad_w_hx, &full.grad_w_hx),
            ("grad_w_hh", &g.grad_w_hh, &full.grad_w_hh),
            ("grad_h0", &g.grad_h0, &full.grad_h0),
        ] {
            let e = rel_err(got, want);
            assert!(e < 1e-12, "{act:?}: {name} relative error {e:.3e}");
        }
        assert_eq!(g.grad_b_h.is_some(), p.has_bias());
        if let (Some(a), Some(b)) = (&g.grad_b_h, &full.grad_b_h) {
            assert!(rel_err(a, b) < 1e-12, "{act:?}: grad_b_h");
        }
    }
}

/// ∂L/∂x_t and ∂L/∂h_0 (which the full model's reference does not check) against central
/// differences of L = Σ_t ⟨g_t, h_t⟩ + ⟨g_last, h_T⟩, every entry.
#[test]
fn the_reference_layer_input_gradients_match_finite_differences() {
    for (k, act) in [Activation::Identity, Activation::Tanh].into_iter().enumerate() {
        let case = Case::new(LayerShape::new(4, 2, 3, 5).unwrap(), act, true, true, k == 0, 7 + k as u64);
        let (_, g) = case.reference();
        let h0 = case.h0();
        let eps = 1e-6;
        let diff = |plus: f64, minus: f64| (plus - minus) / (2.0 * eps);
        let mut fd_x = Vec::new();
        for i in 0..case.x.len() {
            let (mut xp, mut xm) = (case.x.clone(), case.x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            fd_x.push(diff(case.loss(&xp, &h0), case.loss(&xm, &h0)));
        }
        let mut fd_h0 = Vec::new();
        for i in 0..h0.len() {
            let (mut hp, mut hm) = (h0.clone(), h0.clone());
            hp[i] += eps;
            hm[i] -= eps;
            fd_h0.push(diff(case.loss(&case.x, &hp), case.loss(&case.x, &hm)));
        }
        assert!(rel_err(&g.grad_x, &fd_x) < 1e-7, "{act:?}: grad_x {:.3e}", rel_err(&g.grad_x, &fd_x));
        assert!(rel_err(&g.grad_h0, &fd_h0) < 1e-7, "{act:?}: grad_h0 {:.3e}", rel_err(&g.grad_h0, &fd_h0));
    }
}

#[test]
fn the_fast_cpu_layer_matches_the_reference_on_a_grid() {
    let mut worst: f64 = 0.0;
    for case in grid() {
        let (w_hx, w_hh, b_h, x) = (f32s(&case.w_hx), f32s(&case.w_hh), case.b_h.as_deref().map(f32s), f32s(&case.x));
        let h0 = f32s(&case.h0());
        let w = LayerWeights { w_hx: &w_hx, w_hh: &w_hh, b_h: b_h.as_deref() };
        let h = bptt::cpu::fast::layer::forward(case.s, case.act, &w, &x, &h0);
        let (grad_h, last) = (f32s(&case.grad_h), case.grad_h_last.as_deref().map(f32s));
        let up = Upstream { h: &h, grad_h: &grad_h, grad_h_last: last.as_deref() };
        let g = bptt::cpu::fast::layer::backward(case.s, case.act, &w, &x, &h0, &up);
        worst = worst.max(assert_close(&format!("fast {}", case.what()), &h, &g, &case.reference(), 1e-5));
    }
    eprintln!("fast CPU layer mode: worst relative error {worst:.2e}");
}

/// Every buffer a layer-mode run writes, filled with NaN, so an element no kernel writes shows.
fn poison(gpu: &GpuBptt, ctx: &GpuContext) {
    gpu.poison(ctx);
    for name in ["grad_x", "gq", "xproj", "w_hh_t", "grad_w_hx", "grad_w_hh", "grad_b_h"] {
        if let Ok(buf) = gpu.buffer(name) {
            ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(&vec![f32::NAN; (buf.size() / 4) as usize]));
        }
    }
}

#[test]
fn the_gpu_layer_matches_the_reference_on_both_schedules_and_layouts() {
    let ctxs = common::gpu_with_each_layout();
    let mut runs = vec![(&ctxs[0], Schedule::Stepwise)];
    runs.extend(ctxs.iter().map(|c| (c, Schedule::Fused)));
    let mut worst: f64 = 0.0;
    for case in grid() {
        let want = case.reference();
        let (w_hx, w_hh, b_h, x) = (f32s(&case.w_hx), f32s(&case.w_hh), case.b_h.as_deref().map(f32s), f32s(&case.x));
        let h0 = f32s(&case.h0());
        let w = LayerWeights { w_hx: &w_hx, w_hh: &w_hh, b_h: b_h.as_deref() };
        let (grad_h, last) = (f32s(&case.grad_h), case.grad_h_last.as_deref().map(f32s));
        for &(ctx, schedule) in &runs {
            let mut gpu = GpuBptt::new_layer(ctx, case.s, schedule).unwrap();
            poison(&gpu, ctx);
            let h = gpu.layer_forward(ctx, case.act, &w, &x, &h0).unwrap();
            // The backward pass runs on a fresh poisoning: it relies on nothing the forward
            // call left in the buffers.
            poison(&gpu, ctx);
            let up = Upstream { h: &h, grad_h: &grad_h, grad_h_last: last.as_deref() };
            let g = gpu.layer_backward(ctx, case.act, &w, &x, &h0, &up).unwrap();
            let what = format!("{schedule:?} {:?} {}", ctx.recurrent_layout(), case.what());
            worst = worst.max(assert_close(&what, &h, &g, &want, 1e-5));
        }
    }
    eprintln!("GPU layer mode: worst relative error {worst:.2e}");
}

/// A `Layer` keeps one GPU object per shape: alternating shapes (a short last batch) and
/// precisions gives the reference's results every time, and f64 inputs on the reference are
/// computed in f64.
#[test]
fn a_layer_object_serves_several_shapes_and_both_precisions() {
    let ctx = std::sync::Arc::new(common::gpu());
    let mut gpu = Layer::on_context(ctx, Schedule::Fused);
    let mut cpu = Layer::new(LayerDevice::Cpu).unwrap();
    let mut reference = Layer::new(LayerDevice::Reference).unwrap();
    let cases = [
        Case::new(LayerShape::new(6, 4, 3, 20).unwrap(), Activation::Tanh, true, true, true, 1),
        Case::new(LayerShape::new(6, 1, 3, 20).unwrap(), Activation::Tanh, true, false, true, 2),
    ];
    for round in 0..2 {
        for case in &cases {
            let want = case.reference();
            let (w_hx, w_hh, b_h, x) =
                (f32s(&case.w_hx), f32s(&case.w_hh), case.b_h.as_deref().map(f32s), f32s(&case.x));
            let h0 = case.h0.as_deref().map(f32s);
            let w = LayerWeights { w_hx: &w_hx, w_hh: &w_hh, b_h: b_h.as_deref() };
            let (grad_h, last) = (f32s(&case.grad_h), case.grad_h_last.as_deref().map(f32s));
            for (name, layer) in [("gpu", &mut gpu), ("cpu", &mut cpu)] {
                let h = layer.forward(case.s, case.act, &w, &x, h0.as_deref()).unwrap();
                let up = Upstream { h: &h, grad_h: &grad_h, grad_h_last: last.as_deref() };
                let g = layer.backward(case.s, case.act, &w, &x, h0.as_deref(), &up).unwrap();
                assert_close(&format!("{name} round {round} {}", case.what()), &h, &g, &want, 1e-5);
            }
            // f64 through the reference: the reference's own numbers, bit for bit.
            let h = reference.forward(case.s, case.act, &case.w(), &case.x, case.h0.as_deref()).unwrap();
            assert_eq!(h, want.0);
            let up = Upstream { h: &h, grad_h: &case.grad_h, grad_h_last: case.grad_h_last.as_deref() };
            let g = reference.backward(case.s, case.act, &case.w(), &case.x, case.h0.as_deref(), &up).unwrap();
            assert_eq!(g, want.1);
        }
    }
}

#[test]
fn wrong_lengths_are_refused_naming_the_tensor() {
    let s = LayerShape::new(3, 2, 4, 5).unwrap();
    let mut layer = Layer::new(LayerDevice::Cpu).unwrap();
    let (w_hx, w_hh, x) = (vec![0.0f32; 20], vec![0.0f32; 25], vec![0.0f32; 24]);
    let w = LayerWeights { w_hx: &w_hx, w_hh: &w_hh, b_h: None };
    let short = vec![0.0f32; 7];
    let err = |r: bptt::Result<Vec<f32>>| r.unwrap_err().to_string();
    assert_eq!(
        err(layer.forward(s, Activation::Tanh, &LayerWeights { w_hx: &short, ..w }, &x, None)),
        "tensor `w_hx`: expected 20 values for shape [5, 4], got 7"
    );
    assert_eq!(
        err(layer.forward(s, Activation::Tanh, &w, &short, None)),
        "tensor `x`: expected 24 values for shape [3, 2, 4], got 7"
    );
    assert_eq!(
        err(layer.forward(s, Activation::Tanh, &w, &x, Some(&short))),
        "tensor `h0`: expected 10 values for shape [2, 5], got 7"
    );
    let h = layer.forward(s, Activation::Tanh, &w, &x, None).unwrap();
    let up = Upstream { h: &h, grad_h: &short, grad_h_last: None };
    let e = layer.backward(s, Activation::Tanh, &w, &x, None, &up).unwrap_err().to_string();
    assert_eq!(e, "tensor `grad_h`: expected 30 values for shape [3, 2, 5], got 7");
    assert!(LayerShape::new(0, 1, 1, 1).unwrap_err().to_string().contains("steps must be at least 1"));

    // A layer-mode GPU object runs only in layer mode, and a full one only in full mode.
    let ctx = common::gpu();
    let mut layer_obj = GpuBptt::new_layer(&ctx, s, Schedule::Fused).unwrap();
    let p = random_problem(&ProblemSpec::new(Shape::new(3, 2, 4, 5, 1).unwrap())).unwrap();
    assert!(layer_obj.run(&ctx, &p, false).unwrap_err().to_string().contains("layer mode"));
    let mut full = GpuBptt::new(&ctx, p.shape, Schedule::Fused).unwrap();
    let e = full.layer_forward(&ctx, Activation::Tanh, &w, &x, &[0.0; 10]).unwrap_err().to_string();
    assert!(e.contains("not built for the layer mode"), "{e}");
}
