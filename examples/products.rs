//! Times the products of one BPTT call at (h, T, B) = (1024, 256, 32) (or the batch `--batch`
//! gives), d = q = 64, in the fast path's own kernel (`bptt::cpu::fast::gemm`), the `gemm`
//! crate and `matrixmultiply`, alternately, round after round, and prints a table of the
//! medians (docs/performance.md, "The products"). Timing only: the three are checked to agree
//! (relative difference ≤ 1e-5), nothing passes or fails.
//!
//!     cargo run --release --example products -- [ROUNDS] [--isa avx512|avx2] [--batch B]
//!
//! Each product is timed on all the pool's threads (RAYON_NUM_THREADS), the median of 5 calls
//! after one untimed call, every round. "step" is one recurrence step's product as a library
//! call, 256 times over: the libraries pack w_hh's block for every call, where the recurrence
//! packs it once per pass (`kernel::panels_product`).

use std::time::Instant;

use bptt::cpu::fast::Isa;
use bptt::cpu::fast::gemm::{View, gemm};

/// A product C [m, n] = A [m, k]·B [k, n], A(i, l) at a[i·ars + l·acs], B(l, j) at b[l·brs + j·bcs].
struct Product<'a> {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    a_t: bool,
    b: &'a [f32],
    b_t: bool,
    calls: usize,
}

impl Product<'_> {
    fn views(&self) -> (View<'_>, View<'_>) {
        let a = if self.a_t { View::new(self.a, self.k, self.m).t() } else { View::new(self.a, self.m, self.k) };
        let b = if self.b_t { View::new(self.b, self.n, self.k).t() } else { View::new(self.b, self.k, self.n) };
        (a, b)
    }

    /// (row stride, column stride) of A and of B.
    fn strides(&self) -> ((isize, isize), (isize, isize)) {
        let (m, k, n) = (self.m as isize, self.k as isize, self.n as isize);
        let a = if self.a_t { (1, m) } else { (k, 1) };
        let b = if self.b_t { (1, k) } else { (n, 1) };
        (a, b)
    }

    fn flop(&self) -> f64 {
        2.0 * (self.m * self.k * self.n * self.calls) as f64
    }
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

fn own(p: &Product, c: &mut [f32]) {
    let (a, b) = p.views();
    for _ in 0..p.calls {
        gemm(a, b, c, false);
    }
}

fn gemm_crate(p: &Product, c: &mut [f32]) {
    let ((ars, acs), (brs, bcs)) = p.strides();
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    for _ in 0..p.calls {
        // SAFETY: a, b and c hold [m, k], [k, n] and [m, n] at these strides.
        unsafe {
            gemm::gemm(
                p.m,
                p.n,
                p.k,
                c.as_mut_ptr(),
                1,
                p.n as isize,
                false,
                p.a.as_ptr(),
                acs,
                ars,
                p.b.as_ptr(),
                bcs,
                brs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    }
}

fn matrixmultiply(p: &Product, c: &mut [f32]) {
    let ((ars, acs), (brs, bcs)) = p.strides();
    for _ in 0..p.calls {
        // SAFETY: as above.
        unsafe {
            matrixmultiply::sgemm(
                p.m,
                p.k,
                p.n,
                1.0,
                p.a.as_ptr(),
                ars,
                acs,
                p.b.as_ptr(),
                brs,
                bcs,
                0.0,
                c.as_mut_ptr(),
                p.n as isize,
                1,
            )
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let isa = match args.iter().position(|a| a == "--isa").map(|i| args[i + 1].as_str()) {
        Some("avx2") => Isa::Avx2Fma,
        Some("avx512") | None => Isa::detect(),
        Some(other) => panic!("--isa avx512|avx2, not {other}"),
    };
    let batch: usize = args.iter().position(|a| a == "--batch").map_or(32, |i| args[i + 1].parse().expect("--batch B"));
    let (h, d, q, rows) = (1024, 64, 64, 256 * batch);
    // At least the 16-step window's rows of ∂A and H, whatever the batch.
    let long = rows.max(16 * 32);
    let (da, hs, x, go) = (values(long * h, 1), values(long * h, 2), values(rows * d, 3), values(rows * q, 4));
    let (w_hx, w_qh, w_hh) = (values(h * d, 5), values(q * h, 6), values(h * h, 7));
    let window = 16 * 32 * h;
    let products = [
        Product {
            name: "∂L/∂w_hh = ∂Aᵀ·H_prev",
            m: h,
            k: rows,
            n: h,
            a: &da[..rows * h],
            a_t: true,
            b: &hs[..rows * h],
            b_t: false,
            calls: 1,
        },
        Product {
            name: "∂L/∂w_hh, a window of 16 steps",
            m: h,
            k: 512,
            n: h,
            a: &da[..window],
            a_t: true,
            b: &hs[..window],
            b_t: false,
            calls: 1,
        },
        Product {
            name: "∂L/∂w_hx = ∂Aᵀ·X",
            m: h,
            k: rows,
            n: d,
            a: &da[..rows * h],
            a_t: true,
            b: &x,
            b_t: false,
            calls: 1,
        },
        Product {
            name: "∂L/∂w_qh = ∂Oᵀ·H",
            m: q,
            k: rows,
            n: h,
            a: &go,
            a_t: true,
            b: &hs[..rows * h],
            b_t: false,
            calls: 1,
        },
        Product { name: "X·w_hxᵀ", m: rows, k: d, n: h, a: &x, a_t: false, b: &w_hx, b_t: true, calls: 1 },
        Product { name: "∂L/∂O·w_qh", m: rows, k: q, n: h, a: &go, a_t: false, b: &w_qh, b_t: false, calls: 1 },
        Product {
            name: "O = H·w_qhᵀ",
            m: rows,
            k: h,
            n: q,
            a: &hs[..rows * h],
            a_t: false,
            b: &w_qh,
            b_t: true,
            calls: 1,
        },
        // w_hhᵀ as the fast path holds it: a row-major copy.
        Product {
            name: "step: H_{t−1}·w_hhᵀ, 256 calls",
            m: 32,
            k: h,
            n: h,
            a: &hs[..32 * h],
            a_t: false,
            b: &w_hh,
            b_t: false,
            calls: 256,
        },
    ];
    println!(
        "{} threads, own kernel on {isa:?}; load average {}",
        rayon::current_num_threads(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; products.len()];
    for _ in 0..rounds {
        for (p, t) in products.iter().zip(&mut times) {
            let mut c = [vec![0.0f32; p.m * p.n], vec![0.0f32; p.m * p.n], vec![0.0f32; p.m * p.n]];
            t[0].push(median_ms(|| isa.run_with(|| own(p, &mut c[0]))));
            t[1].push(median_ms(|| gemm_crate(p, &mut c[1])));
            t[2].push(median_ms(|| matrixmultiply(p, &mut c[2])));
            let norm = c[2].iter().map(|x| x * x).sum::<f32>().sqrt();
            for other in &c[..2] {
                let diff = other.iter().zip(&c[2]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
                assert!(diff <= 1e-5 * norm, "{}: the products differ ({diff} against ‖C‖ {norm})", p.name);
            }
        }
    }
    println!("\n| product [m, k]·[k, n] | GFLOP | fast path's kernel | gemm 0.19 | matrixmultiply 0.3 |");
    println!("|---|---|---|---|---|");
    for (p, t) in products.iter().zip(&mut times) {
        let cell = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let ms = v[v.len() / 2];
            format!("{ms:.2} ms, {:.0} GFLOP/s", p.flop() / ms / 1e6)
        };
        let [a, b, c] = t;
        println!(
            "| {} [{}, {}]·[{}, {}] | {:.2} | {} | {} | {} |",
            p.name,
            p.m,
            p.k,
            p.k,
            p.n,
            p.flop() / 1e9,
            cell(a),
            cell(b),
            cell(c)
        );
    }
    println!("\n(medians over {rounds} rounds of each round's median of 5 calls)");
}
