//! The tiled matmul kernel on its own, against a CPU product, on awkward sizes (not multiples of
//! the 64×64 tile or the 16-deep slice), with transposed operands (swapped strides), offsets and
//! a bias.

mod common;

use bptt::gpu::matmul::{Operand, matmul};

/// A deterministic pseudo-random matrix (values in [-1, 1)).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn at(o: &Operand, r: usize, c: usize) -> f64 {
    o.data[o.offset as usize + r * o.row_stride as usize + c * o.col_stride as usize] as f64
}

#[test]
fn matmul_matches_a_cpu_product_on_awkward_sizes() {
    let ctx = common::gpu();
    let mut worst: f64 = 0.0;
    for (case, &(m, n, k)) in
        [(1, 1, 1), (3, 5, 7), (65, 63, 17), (64, 64, 16), (130, 70, 33), (7, 129, 200), (5, 3, 1000)]
            .iter()
            .enumerate()
    {
        for transpose_a in [false, true] {
            for transpose_b in [false, true] {
                let a_off = 5usize;
                let a_data = values(a_off + m * k, case as u32 * 4 + 1);
                let b_data = values(3 + k * n, case as u32 * 4 + 2);
                // A stored [m,k] row-major, or [k,m] read transposed; likewise B.
                let a = if transpose_a {
                    Operand { data: &a_data, offset: a_off as u32, row_stride: 1, col_stride: m as u32 }
                } else {
                    Operand { data: &a_data, offset: a_off as u32, row_stride: k as u32, col_stride: 1 }
                };
                let b = if transpose_b {
                    Operand { data: &b_data, offset: 3, row_stride: 1, col_stride: k as u32 }
                } else {
                    Operand { data: &b_data, offset: 3, row_stride: n as u32, col_stride: 1 }
                };
                let bias = values(n, 99);
                let with_bias = case % 2 == 1;
                let got = matmul(&ctx, m as u32, n as u32, k as u32, a, b, with_bias.then_some(&bias[..])).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let mut want: f64 = (0..k).map(|l| at(&a, i, l) * at(&b, l, j)).sum();
                        if with_bias {
                            want += bias[j] as f64;
                        }
                        let g = got[i * n + j] as f64;
                        let err = (g - want).abs() / (1.0 + want.abs());
                        assert!(
                            err < 1e-5,
                            "m={m} n={n} k={k} tA={transpose_a} tB={transpose_b}: C[{i},{j}] = {g}, want {want}"
                        );
                        worst = worst.max(err);
                    }
                }
            }
        }
    }
    println!("largest error {worst:.2e}");
}
