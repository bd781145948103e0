//! The spectral radius that random problems are scaled to: `linalg::spectral_radius` against
//! matrices whose eigenvalues are known by construction, against Gelfand's formula
//! ρ = lim ‖A^k‖^{1/k} evaluated here by repeated squaring, and `random_problem`'s rescaling.

use bptt::linalg::spectral_radius;
use bptt::model::{norm, rel_err};
use bptt::{ProblemSpec, random_problem};

use crate::common::{assert_close, identity, matmul, shape, transpose};

/// ρ(A) ≈ ‖A^K‖_F^{1/K} with K = 2^14, by squaring a normalized copy (so nothing overflows).
/// ‖A^K‖ = c·ρ^K with c bounded by the eigenvector basis' condition number (times a
/// polynomial in K for a defective A), so the error in log ρ is about log(c)/K ≈ 1e-4.
fn gelfand_radius(a: &[f64], n: usize) -> f64 {
    let mut log_norm = norm(a).ln(); // log ‖A^k‖ for the current k
    let mut b: Vec<f64> = a.iter().map(|v| v / norm(a)).collect();
    let mut k = 1.0;
    for _ in 0..14 {
        b = matmul(&b, &b, n, n, n);
        let nb = norm(&b);
        b.iter_mut().for_each(|v| *v /= nb);
        log_norm = 2.0 * log_norm + nb.ln();
        k *= 2.0;
    }
    (log_norm / k).exp()
}

/// Block diagonal of 2×2 blocks: (r, θ) gives r·rotation(θ) with eigenvalues r·e^{±iθ};
/// θ = 0 is read as the real pair (r, second) on the diagonal instead.
fn block_diagonal(blocks: &[(f64, f64, f64)]) -> Vec<f64> {
    let n = 2 * blocks.len();
    let mut m = vec![0.0; n * n];
    for (k, &(r, theta, second)) in blocks.iter().enumerate() {
        let i = 2 * k;
        let (c, s) = (theta.cos(), theta.sin());
        let block = if theta == 0.0 { [r, 0.0, 0.0, second] } else { [r * c, -r * s, r * s, r * c] };
        m[i * n + i] = block[0];
        m[i * n + i + 1] = block[1];
        m[(i + 1) * n + i] = block[2];
        m[(i + 1) * n + i + 1] = block[3];
    }
    m
}

/// P·D·P⁻¹ with P = I + u·vᵀ, whose inverse is I − u·vᵀ/(1 + vᵀu) (Sherman–Morrison):
/// same eigenvalues as D, but non-normal, so it is not just a rotation in disguise.
///
/// P is kept mildly conditioned on purpose. For a dominant complex pair, ‖A^k v‖ / ρ^k
/// oscillates within a factor κ(P), and `linalg::spectral_radius` (the mean log-growth over
/// iterations 200..400) can be off by up to log(κ(P))/200 in log ρ. Here ‖u‖²‖v‖² ≈ 0.036 and
/// vᵀu = −0.002 give singular values 1.098 and 0.909 in span{u, v} (1 elsewhere), κ ≈ 1.21,
/// so the bound is 9.5e-4, inside the 1e-3 tolerance whatever the phase.
fn conjugate(d: &[f64], n: usize) -> Vec<f64> {
    let u = [0.24, -0.16, 0.08, 0.2, -0.12, 0.16];
    let v = [0.2, 0.1, -0.3, 0.15, 0.2, -0.1];
    assert_eq!(n, u.len());
    let vu: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
    let mut p = identity(n);
    let mut p_inv = identity(n);
    for i in 0..n {
        for j in 0..n {
            p[i * n + j] += u[i] * v[j];
            p_inv[i * n + j] -= u[i] * v[j] / (1.0 + vu);
        }
    }
    assert!(rel_err(&matmul(&p, &p_inv, n, n, n), &identity(n)) < 1e-14, "P·P⁻¹ = I");
    matmul(&matmul(&p, d, n, n, n), &p_inv, n, n, n)
}

/// ‖AᵀA − AAᵀ‖ / ‖A‖²: zero exactly when A is normal.
fn non_normality(a: &[f64], n: usize) -> f64 {
    let at = transpose(a, n, n);
    let ata = matmul(&at, a, n, n, n);
    let aat = matmul(a, &at, n, n, n);
    let commutator: Vec<f64> = ata.iter().zip(&aat).map(|(x, y)| x - y).collect();
    norm(&commutator) / norm(a).powi(2)
}

#[test]
fn radius_of_matrices_with_known_eigenvalues() {
    let n = 6;
    // Dominant eigenvalues a complex pair 0.9·e^{±0.4i} (where plain power iteration fails).
    let complex = conjugate(&block_diagonal(&[(0.6, 1.3, 0.0), (0.9, 0.4, 0.0), (0.3, 2.2, 0.0)]), n);
    // Dominant eigenvalue real and negative, −0.95, with a complex pair of modulus 0.9 close by.
    let real = conjugate(&block_diagonal(&[(0.9, 0.7, 0.0), (-0.95, 0.0, 0.2), (0.5, 2.0, 0.0)]), n);
    for (name, a, rho) in [("complex pair 0.9", complex, 0.9), ("real −0.95", real, 0.95)] {
        let departure = non_normality(&a, n);
        assert!(departure > 0.05, "{name}: test matrix should be non-normal");
        let estimate = spectral_radius(&a, n);
        let gelfand = gelfand_radius(&a, n);
        println!(
            "{name} (non-normality {departure:.3}): linalg {estimate:.9}, \
             Gelfand {gelfand:.9}, exact {rho}"
        );
        assert_close(&format!("{name}: Gelfand check of the test itself"), gelfand, rho, 1e-3);
        assert_close(&format!("{name}: linalg::spectral_radius"), estimate, rho, 1e-3);
    }
}

#[test]
fn random_problem_scales_w_hh_to_the_requested_radius() {
    for (h, seed) in [(6, 1), (16, 2), (64, 3)] {
        let base = ProblemSpec { seed, ..ProblemSpec::new(shape(2, 1, 2, h, 2)) };
        let unscaled = random_problem(&base).expect("valid random problem").params.w_hh;
        let rho_unscaled = spectral_radius(&unscaled, h);
        if h == 6 {
            // Independent check of the estimator on a random matrix, not one built for it.
            assert_close("ρ(random 6×6 w_hh) vs Gelfand", rho_unscaled, gelfand_radius(&unscaled, h), 1e-3);
        }
        for r in [0.5, 1.0, 1.5] {
            let spec = ProblemSpec { spectral_radius: Some(r), ..base.clone() };
            let w_hh = random_problem(&spec).expect("valid random problem").params.w_hh;
            // The estimator is homogeneous (ρ(cA) = c·ρ(A) step by step), so rescaling by
            // r/ρ gives back r up to rounding.
            assert_close(&format!("h={h}: ρ(w_hh) for r={r}"), spectral_radius(&w_hh, h), r, 1e-6);
            // Only w_hh's scale changes: same stream, same direction.
            let expected: Vec<f64> = unscaled.iter().map(|w| w * r / rho_unscaled).collect();
            assert!(rel_err(&w_hh, &expected) < 1e-14, "h={h}, r={r}: w_hh is not a rescaled copy");
            if h == 6 {
                assert_close(&format!("h=6: Gelfand ρ(w_hh) for r={r}"), gelfand_radius(&w_hh, h), r, 1e-3);
            }
        }
    }
}
