//! The optimisers, in f32, element by element exactly as `shaders/sgd_update.wgsl` and
//! `shaders/adam_update.wgsl` compute them (so the CPU and GPU paths agree to f32 rounding):
//!
//!   SGD with momentum μ (PyTorch's form):  v ← μ·v + g,  w ← w − η·v
//!   Adam (Kingma & Ba 2015):  m ← β₁·m + (1 − β₁)·g,  v ← β₂·v + (1 − β₂)·g²,
//!                             w ← w − η·(m / c₁) / (√(v / c₂) + ε),  c_k = 1 − β_kⁿ at step n.

use super::weights::Weights;

/// Which optimiser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// SGD with momentum (--momentum).
    Sgd,
    /// Adam, β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    #[default]
    Adam,
}

crate::choice!(OptimKind {
    Sgd => "sgd": "SGD with momentum (`momentum`)",
    Adam => "adam": "Adam, β₁ = 0.9, β₂ = 0.999, ε = 1e-8",
});

pub const ADAM_BETA1: f64 = 0.9;
pub const ADAM_BETA2: f64 = 0.999;
pub const ADAM_EPS: f64 = 1e-8;

/// The hyperparameters of one update, as the kernels' uniform (8 × 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UpdateParams {
    pub n: u32,
    /// η
    pub lr: f32,
    /// μ (SGD) or β₁ (Adam)
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// c₁ = 1 − β₁ⁿ
    pub bc1: f32,
    /// c₂ = 1 − β₂ⁿ
    pub bc2: f32,
    pub _pad: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optim {
    pub kind: OptimKind,
    pub lr: f64,
    pub momentum: f64,
}

impl Optim {
    /// The uniform for update number `step` (1, 2, …) of a tensor of `n` elements.
    pub fn params(&self, step: u64, n: usize) -> UpdateParams {
        let (beta1, beta2) = match self.kind {
            OptimKind::Sgd => (self.momentum, 0.0),
            OptimKind::Adam => (ADAM_BETA1, ADAM_BETA2),
        };
        // In f64, then rounded once: β₂ⁿ for large n is far below f32's step near 1.
        let bc = |beta: f64| (1.0 - beta.powf(step as f64)) as f32;
        UpdateParams {
            n: n as u32,
            lr: self.lr as f32,
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            eps: ADAM_EPS as f32,
            bc1: bc(beta1),
            bc2: bc(beta2),
            _pad: 0,
        }
    }
}

/// Optimiser state on the CPU: one (m, v) pair per parameter tensor (v unused by SGD).
pub struct CpuOptim {
    pub optim: Optim,
    state: Vec<(Vec<f32>, Vec<f32>)>,
    step: u64,
}

impl CpuOptim {
    pub fn new(optim: Optim, w: &Weights) -> Self {
        let state = w.tensors().iter().map(|(_, v)| (vec![0.0; v.len()], vec![0.0; v.len()])).collect();
        CpuOptim { optim, state, step: 0 }
    }

    /// One update of every tensor with its gradient (in the order of `Weights::tensors`).
    pub fn update(&mut self, w: &mut Weights, grads: [&[f64]; 5]) {
        self.step += 1;
        for ((w, g), (m, v)) in w.tensors_mut().into_iter().zip(grads).zip(&mut self.state) {
            let p = self.optim.params(self.step, w.len());
            match self.optim.kind {
                OptimKind::Sgd => sgd(&p, w, g, m),
                OptimKind::Adam => adam(&p, w, g, m, v),
            }
        }
    }
}

fn sgd(p: &UpdateParams, w: &mut [f32], g: &[f64], vel: &mut [f32]) {
    for ((w, &g), vel) in w.iter_mut().zip(g).zip(vel) {
        *vel = p.beta1 * *vel + g as f32;
        *w -= p.lr * *vel;
    }
}

fn adam(p: &UpdateParams, w: &mut [f32], g: &[f64], m: &mut [f32], v: &mut [f32]) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let g = g as f32;
        *m = p.beta1 * *m + (1.0 - p.beta1) * g;
        *v = p.beta2 * *v + (1.0 - p.beta2) * g * g;
        *w -= p.lr * (*m / p.bc1) / ((*v / p.bc2).sqrt() + p.eps);
    }
}
