//! Small dense helpers written independently of the crate (row-major, f64), so the tests do
//! not check the reference with its own code.

use bptt::{Activation, LossAt, LossFn, Problem, ProblemSpec, Shape, Targets};

pub fn shape(steps: usize, batch: usize, input: usize, hidden: usize, output: usize) -> Shape {
    Shape::new(steps, batch, input, hidden, output).expect("valid test shape")
}

/// A random-problem spec with every knob the tests turn.
pub fn spec(shape: Shape, activation: Activation, loss: LossFn, bias: bool, random_h0: bool, seed: u64) -> ProblemSpec {
    ProblemSpec { activation, loss, loss_at: LossAt::All, bias, seed, random_h0, ..ProblemSpec::new(shape) }
}

/// C [n,k] = A [n,m] · B [m,k].
pub fn matmul(a: &[f64], b: &[f64], n: usize, m: usize, k: usize) -> Vec<f64> {
    assert_eq!((a.len(), b.len()), (n * m, m * k));
    let mut c = vec![0.0; n * k];
    for i in 0..n {
        for l in 0..m {
            for j in 0..k {
                c[i * k + j] += a[i * m + l] * b[l * k + j];
            }
        }
    }
    c
}

/// Aᵀ [cols,rows] of A [rows,cols].
pub fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(a.len(), rows * cols);
    let mut t = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = a[i * cols + j];
        }
    }
    t
}

/// A·v for A [rows,cols].
pub fn matvec(a: &[f64], v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    matmul(a, v, rows, cols, 1)
}

pub fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

/// |a − b| ≤ tol·|b|, with a message that shows both.
#[track_caller]
pub fn assert_close(what: &str, a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs(), "{what}: got {a:e}, expected {b:e} (relative tolerance {tol:e})");
}

/// ∂L/∂o [T,B,q] for outputs o [T,B,q], from the loss definitions: o − y for mse,
/// softmax(o) − onehot(label) for xent, times 1/(T·B) (LossAt::All) or, for the last step
/// only, 1/B (LossAt::Last).
pub fn grad_o(p: &Problem, o: &[f64]) -> Vec<f64> {
    let s = p.shape;
    let (nt, nb, q) = (s.steps, s.batch, s.output);
    let mut g = vec![0.0; nt * nb * q];
    for t in 0..nt {
        let weight = match p.loss_at {
            LossAt::All => 1.0 / (nt * nb) as f64,
            LossAt::Last if t == nt - 1 => 1.0 / nb as f64,
            LossAt::Last => 0.0,
        };
        for b in 0..nb {
            let row = (t * nb + b) * q;
            let o_tb = &o[row..row + q];
            match &p.targets {
                Targets::Mse(y) => {
                    for k in 0..q {
                        g[row + k] = weight * (o_tb[k] - y[row + k]);
                    }
                }
                Targets::Xent(labels) => {
                    let m = o_tb.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = o_tb.iter().map(|v| (v - m).exp()).sum();
                    let label = labels[t * nb + b] as usize;
                    for k in 0..q {
                        let onehot = if k == label { 1.0 } else { 0.0 };
                        g[row + k] = weight * ((o_tb[k] - m).exp() / z - onehot);
                    }
                }
            }
        }
    }
    g
}
