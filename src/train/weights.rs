//! The trained parameters, in f32 (what the GPU holds; the CPU path keeps the same values so the
//! two agree to f32 rounding), and their initialisation.
//!
//! w_hx ~ N(0, 1/d), w_qh ~ N(0, 1/h), biases 0, and w_hh by `--init-recurrent`:
//! normal N(0, s²/h) (spectral radius about s), identity s·I (the IRNN, Le et al. 2015), or
//! orthogonal s·Q with Q from the QR factorisation of a Gaussian matrix (Saxe et al. 2014);
//! s is `--init-scale`.

use rand_distr::{Distribution, StandardNormal};

use super::tasks::rng;
use crate::model::Params;

/// How w_hh starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitRecurrent {
    /// N(0, s²/h): spectral radius about s.
    #[default]
    Normal,
    /// s·I: the IRNN's (with relu).
    Identity,
    /// s·Q, Q orthogonal: every singular value s.
    Orthogonal,
}

crate::choice!(InitRecurrent {
    Normal => "normal": "N(0, s²/h): spectral radius about s",
    Identity => "identity": "s·I: the IRNN's (with relu)",
    Orthogonal => "orthogonal": "s·Q, Q orthogonal: every singular value s",
});

/// Parameters as f32, row-major: w_hx `[h,d]`, w_hh `[h,h]`, w_qh `[q,h]`, b_h `[h]`, b_q `[q]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    pub w_hx: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub w_qh: Vec<f32>,
    pub b_h: Vec<f32>,
    pub b_q: Vec<f32>,
}

/// Seeded streams of the initialisation (distinct from the minibatches').
const INIT_STREAM: u64 = 1 << 32;

impl Weights {
    pub fn init(d: usize, h: usize, q: usize, init: InitRecurrent, scale: f64, seed: u64) -> Self {
        let normal = |stream: u64, n: usize, std: f64| -> Vec<f64> {
            let mut r = rng(seed, INIT_STREAM + stream);
            (0..n).map(|_| std * Distribution::<f64>::sample(&StandardNormal, &mut r)).collect()
        };
        let w_hh = match init {
            InitRecurrent::Normal => normal(1, h * h, scale / (h as f64).sqrt()),
            InitRecurrent::Identity => (0..h * h).map(|k| if k / h == k % h { scale } else { 0.0 }).collect(),
            InitRecurrent::Orthogonal => {
                let mut q = orthonormal_rows(normal(1, h * h, 1.0), h);
                q.iter_mut().for_each(|v| *v *= scale);
                q
            }
        };
        Weights {
            w_hx: f32s(&normal(0, h * d, 1.0 / (d as f64).sqrt())),
            w_hh: f32s(&w_hh),
            w_qh: f32s(&normal(2, q * h, 1.0 / (h as f64).sqrt())),
            b_h: vec![0.0; h],
            b_q: vec![0.0; q],
        }
    }

    /// The tensors by name, in the saved file's order.
    pub fn tensors(&self) -> [(&'static str, &[f32]); 5] {
        [("w_hx", &self.w_hx), ("w_hh", &self.w_hh), ("w_qh", &self.w_qh), ("b_h", &self.b_h), ("b_q", &self.b_q)]
    }

    pub fn tensors_mut(&mut self) -> [&mut Vec<f32>; 5] {
        [&mut self.w_hx, &mut self.w_hh, &mut self.w_qh, &mut self.b_h, &mut self.b_q]
    }

    /// As the model's f64 parameters (exact: every f32 is an f64), biases on.
    pub fn params(&self) -> Params {
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        Params {
            w_hx: f64s(&self.w_hx),
            w_hh: f64s(&self.w_hh),
            w_qh: f64s(&self.w_qh),
            b_h: Some(f64s(&self.b_h)),
            b_q: Some(f64s(&self.b_q)),
        }
    }

    pub fn all_finite(&self) -> bool {
        self.tensors().iter().all(|(_, v)| v.iter().all(|x| x.is_finite()))
    }
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Gram–Schmidt (modified, twice for stability) on the rows of a Gaussian `[n,n]` matrix: the
/// rows of the result are orthonormal, so the matrix is orthogonal.
fn orthonormal_rows(mut m: Vec<f64>, n: usize) -> Vec<f64> {
    for i in 0..n {
        for _ in 0..2 {
            for j in 0..i {
                let dot: f64 = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum();
                for k in 0..n {
                    m[i * n + k] -= dot * m[j * n + k];
                }
            }
        }
        let norm = (0..n).map(|k| m[i * n + k] * m[i * n + k]).sum::<f64>().sqrt();
        for k in 0..n {
            m[i * n + k] /= norm;
        }
    }
    m
}
