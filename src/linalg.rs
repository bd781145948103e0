//! Small dense linear algebra the diagnostics need: the spectral radius and the largest
//! singular value of w_hh, both by power iteration in f64 (documented in docs/report.md).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// y = A·v for a square row-major A [n,n].
fn matvec(a: &[f64], v: &[f64], y: &mut [f64]) {
    let n = v.len();
    for (i, yi) in y.iter_mut().enumerate() {
        *yi = a[i * n..][..n].iter().zip(v).map(|(x, y)| x * y).sum();
    }
}

/// y = Aᵀ·v for a square row-major A [n,n].
fn matvec_t(a: &[f64], v: &[f64], y: &mut [f64]) {
    let n = v.len();
    y.fill(0.0);
    for (i, &vi) in v.iter().enumerate() {
        for (yj, aij) in y.iter_mut().zip(&a[i * n..][..n]) {
            *yj += aij * vi;
        }
    }
}

fn start_vector(n: usize) -> Vec<f64> {
    // Fixed seed: the estimate is a deterministic function of the matrix.
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let v: Vec<f64> = (0..n).map(|_| Distribution::<f64>::sample(&StandardNormal, &mut rng)).collect();
    let nv = crate::model::norm(&v);
    v.into_iter().map(|x| x / nv).collect()
}

/// Spectral radius ρ(A) = max |λ|, estimated from the growth rate of ‖A^k v‖.
///
/// Plain power iteration (the Rayleigh quotient) does not converge when the dominant
/// eigenvalues are a complex pair, which is the usual case for a random real matrix. The growth
/// rate of ‖A^k v‖ does converge to ρ for any start vector with a component along the dominant
/// eigenvectors (Gelfand's formula), so we average log(‖A^{k+1}v‖/‖A^k v‖) over the second half
/// of `iters` iterations, which cancels the transient of the first half. For a random Gaussian
/// matrix of size 1024 the estimate is within about 0.5% of the eigen-solver's value.
pub fn spectral_radius(a: &[f64], n: usize) -> f64 {
    spectral_radius_iters(a, n, 400)
}

pub fn spectral_radius_iters(a: &[f64], n: usize, iters: usize) -> f64 {
    assert_eq!(a.len(), n * n);
    let mut v = start_vector(n);
    let mut y = vec![0.0; n];
    let mut log_growth = 0.0;
    let mut counted = 0usize;
    for k in 0..iters {
        matvec(a, &v, &mut y);
        let ny = crate::model::norm(&y);
        if ny == 0.0 || !ny.is_finite() {
            return if ny == 0.0 { 0.0 } else { f64::NAN };
        }
        if k >= iters / 2 {
            log_growth += ny.ln();
            counted += 1;
        }
        for (vi, yi) in v.iter_mut().zip(&y) {
            *vi = yi / ny;
        }
    }
    (log_growth / counted as f64).exp()
}

/// Largest singular value σ_max(A) = sqrt(λ_max(AᵀA)), by power iteration on AᵀA (symmetric and
/// positive semi-definite, so the iteration converges to σ_max² monotonically).
pub fn largest_singular_value(a: &[f64], n: usize) -> f64 {
    assert_eq!(a.len(), n * n);
    let mut v = start_vector(n);
    let mut av = vec![0.0; n];
    let mut atav = vec![0.0; n];
    let mut sigma2 = 0.0;
    for _ in 0..300 {
        matvec(a, &v, &mut av);
        matvec_t(a, &av, &mut atav);
        let nn = crate::model::norm(&atav);
        if nn == 0.0 || !nn.is_finite() {
            return if nn == 0.0 { 0.0 } else { f64::NAN };
        }
        let prev = sigma2;
        sigma2 = nn;
        for (vi, yi) in v.iter_mut().zip(&atav) {
            *vi = yi / nn;
        }
        if (sigma2 - prev).abs() <= 1e-12 * sigma2 {
            break;
        }
    }
    sigma2.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_of_a_rotation_times_r_is_r() {
        // A 2×2 rotation scaled by 0.7: eigenvalues 0.7·e^{±iθ}, a complex pair, so plain
        // power iteration would oscillate; the growth rate must still give 0.7.
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let a = [0.7 * c, -0.7 * s, 0.7 * s, 0.7 * c];
        assert!((spectral_radius(&a, 2) - 0.7).abs() < 1e-9);
        assert!((largest_singular_value(&a, 2) - 0.7).abs() < 1e-9);
    }

    #[test]
    fn non_normal_matrix_radius_differs_from_norm() {
        // Upper triangular: eigenvalues 0.5 and 0.2 on the diagonal, but σ_max > 2.
        let a = [0.5, 2.0, 0.0, 0.2];
        assert!((spectral_radius(&a, 2) - 0.5).abs() < 1e-6, "{}", spectral_radius(&a, 2));
        assert!(largest_singular_value(&a, 2) > 2.0);
    }
}
