//! Times the fast f32 CPU path against the f64 reference on one seeded problem, and reports the
//! relative error of every result tensor. Timing only: no pass/fail.
//!
//!     cargo run --release --example time_cpu -- [--runs N] [--ref-runs N] [--steps T]
//!         [--batch B] [--input d] [--hidden h] [--output q] [--tanh] [--xent] [--bias]
//!         [--seed S] [--fast-only] [--save-problem FILE] [--isa avx512|avx2|portable] [--floor]
//!
//! `--save-problem FILE` writes the problem's inputs (w_hx w_hh w_qh x y h0) and the fast path's
//! results (loss grad_w_hx grad_w_hh grad_w_qh grad_h0) as f32 safetensors, for
//! scripts/jax_cpu_baseline.py to time the same problem and compare its gradients.
//!
//! `--isa` runs the fast path on a narrower instruction set than the CPU's widest
//! (`fast::bptt_with_isa`).
//!
//! `--floor` (x86-64 with AVX-512, B = 1) alternates each timed call with the streaming floor of
//! its two recurrences, measured in the same minute: two threads each read their half of a
//! w_hh-sized matrix (h/2 rows at the padded stride, in 2 MiB huge pages as the fast path's w_hh
//! is) in aligned 64-byte loads, 2·T times, and wait for each other after every sweep as the
//! recurrences' steps do. Two ways of reading: the block as one stream, in alternating
//! direction, and its rows sixteen at a time (sixteen streams, each row front to back, the
//! groups in alternating order), which reads the same bytes faster on some machines; the floor
//! is the faster of the two. Each timed call follows an untimed one, as in back-to-back calls
//! (the floor's threads leave the pool asleep and the caches cold). It prints the medians and
//! the ratio (docs/performance.md, "B = 1, a fourth look" and "Huge pages"), and nothing else
//! (no reference run, no saved problem).
//!
//! Defaults: T=256 B=1 d=64 h=1024 q=64, identity, mse, seed 0, 21 fast runs, 3 reference runs.

use std::time::Instant;

use bptt::cpu::{fast, reference};
use bptt::model::rel_err;
use bptt::{Activation, BpttResult, LossFn, Problem, ProblemSpec, Shape, Targets, random_problem};
use safetensors::{Dtype, tensor::TensorView};

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).map_or(default, |i| args[i + 1].parse().expect("a number"))
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let shape = Shape::new(
        num("--steps", 256),
        num("--batch", 1),
        num("--input", 64),
        num("--hidden", 1024),
        num("--output", 64),
    )
    .expect("valid shape");
    let mut spec = ProblemSpec::new(shape);
    spec.seed = num("--seed", 0) as u64;
    spec.bias = flag("--bias");
    if flag("--tanh") {
        spec.activation = Activation::Tanh;
    }
    if flag("--xent") {
        spec.loss = LossFn::Xent;
    }
    let p = random_problem(&spec).expect("valid problem");
    let runs = num("--runs", 21);

    let isa = match args.iter().position(|a| a == "--isa").map(|i| args[i + 1].as_str()) {
        None => fast::Isa::detect(),
        Some(name) => {
            *fast::Isa::available().iter().find(|i| i.name() == name).expect("an instruction set this CPU has")
        }
    };
    // One untimed call each, so page faults and thread-pool start-up are not in the numbers.
    let got = fast::bptt_with_isa(&p, isa);
    if flag("--floor") {
        floor::alternate(&p, isa, runs);
        return;
    }
    let fast_ms = median_ms(
        || {
            std::hint::black_box(fast::bptt_with_isa(&p, isa));
        },
        runs,
    );
    println!(
        "{shape} {} {}: fast f32 ({}) median {fast_ms:8.2} ms over {runs} runs",
        spec.activation.name(),
        spec.loss.name(),
        isa.name()
    );
    if let Some(i) = args.iter().position(|a| a == "--save-problem") {
        save_problem(&args[i + 1], &p, &got);
    }
    if flag("--fast-only") {
        return;
    }
    let ref_runs = num("--ref-runs", 3);
    let want = reference::bptt(&p);
    let ref_ms = median_ms(
        || {
            std::hint::black_box(reference::bptt(&p));
        },
        ref_runs,
    );
    println!("{shape}: reference f64 median {ref_ms:8.2} ms over {ref_runs} runs");
    println!("speed-up {:.1}×", ref_ms / fast_ms);
    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        println!("  rel_err {name:12} {:.2e}", rel_err(a, b));
    }
    println!("  rel_err {:12} {:.2e}", "h", rel_err(&got.h, &want.h));
    println!("  rel_err {:12} {:.2e}", "o", rel_err(&got.o, &want.o));
}

/// Inputs and the fast path's results as f32 safetensors (mse problems only: JAX's side has y).
fn save_problem(path: &str, p: &Problem, g: &BpttResult) {
    let Targets::Mse(y) = &p.targets else {
        panic!("--save-problem needs an mse problem");
    };
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let tensors: Vec<(&str, &[f64], Vec<usize>)> = vec![
        ("w_hx", &w.w_hx, vec![nh, d]),
        ("w_hh", &w.w_hh, vec![nh, nh]),
        ("w_qh", &w.w_qh, vec![q, nh]),
        ("x", &p.x, vec![nt, nb, d]),
        ("y", y, vec![nt, nb, q]),
        ("h0", &p.h0, vec![nb, nh]),
        ("loss", std::slice::from_ref(&g.loss), vec![]),
        ("grad_w_hx", &g.grad_w_hx, vec![nh, d]),
        ("grad_w_hh", &g.grad_w_hh, vec![nh, nh]),
        ("grad_w_qh", &g.grad_w_qh, vec![q, nh]),
        ("grad_h0", &g.grad_h0, vec![nb, nh]),
    ];
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, v, _)| v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), b)| (*name, TensorView::new(Dtype::F32, shape.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, None, std::path::Path::new(path)).unwrap();
    println!("saved the problem and the fast path's results to {path}");
}

/// The stepped streaming floor of the B = 1 recurrences, alternated with the call.
#[cfg(target_arch = "x86_64")]
mod floor {
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use bptt::Problem;
    use bptt::cpu::fast;

    /// f32s per 64-byte line, and the row stride of the fast path's w_hh copies.
    const LINE: usize = 16;
    fn padded(cols: usize) -> usize {
        let ld = cols.next_multiple_of(LINE);
        if ld.is_multiple_of(256) { ld + LINE } else { ld }
    }

    /// f32s per 2 MiB huge page.
    const HUGE: usize = 1 << 19;

    /// A block of `len` f32s (a multiple of 128), all `value`, starting on a 2 MiB boundary
    /// inside `buf`, whose 2 MiB stretches Linux is asked to back with huge pages before they
    /// are touched, as the fast path asks for its large buffers (docs/performance.md, "Huge
    /// pages"): the floor is the best read of the block.
    fn huge_block(buf: &mut Vec<f32>, len: usize, value: f32) -> &[f32] {
        *buf = vec![0.0; len + HUGE];
        let skip = (HUGE - (buf.as_ptr() as usize % (4 * HUGE)) / 4) % HUGE;
        let block = &mut buf[skip..skip + len];
        #[cfg(target_os = "linux")]
        // SAFETY: a whole number of 2 MiB stretches inside `block`, from a 2 MiB boundary; the
        // hint changes how the pages are backed, never their contents.
        unsafe {
            libc::madvise(block.as_mut_ptr().cast(), len / HUGE * HUGE * 4, libc::MADV_HUGEPAGE)
        };
        block.fill(value);
        block
    }

    /// Σ of `w` times 1.0 in eight accumulators of 16 lanes, first to last or last to first.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` starts on a 64-byte line and its length is a multiple of 128.
    #[target_feature(enable = "avx512f")]
    unsafe fn sweep(w: &[f32], reverse: bool) -> f32 {
        let one = _mm512_set1_ps(1.0);
        let mut acc = [_mm512_setzero_ps(); 8];
        let n = w.len() / 128;
        for i in 0..n {
            let i = if reverse { n - 1 - i } else { i };
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: in bounds (i < n), on a line (the caller's promise).
                *a = _mm512_fmadd_ps(unsafe { _mm512_load_ps(w.as_ptr().add(i * 128 + 16 * k)) }, one, *a);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    /// Σ of `w`'s rows ([rows, ld], `cols` read of each) sixteen rows at a time: sixteen
    /// accumulators, one per row, each row read front to back; the groups last to first with
    /// `reverse`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` starts on a 64-byte line, ld and cols are multiples of
    /// 16 and cols ≤ ld, and the row count a multiple of 16.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_groups(w: &[f32], ld: usize, cols: usize, reverse: bool) -> f32 {
        const G: usize = 16;
        let groups = w.len() / ld / G;
        let mut total = _mm512_setzero_ps();
        for g in 0..groups {
            let g = if reverse { groups - 1 - g } else { g };
            let rows = w[g * G * ld..].as_ptr();
            let mut acc = [_mm512_setzero_ps(); G];
            for j in (0..cols).step_by(16) {
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: row g·G + i, lanes j..j + 16 ≤ cols ≤ ld, on a line.
                    *a = _mm512_add_ps(unsafe { _mm512_load_ps(rows.add(i * ld + j)) }, *a);
                }
            }
            total = acc.iter().fold(total, |t, &a| _mm512_add_ps(t, a));
        }
        _mm512_reduce_add_ps(total)
    }

    /// How a floor run reads its block: one stream, or rows sixteen at a time.
    #[derive(Clone, Copy, PartialEq)]
    enum Read {
        Stream,
        Rows { ld: usize, cols: usize },
    }

    /// One floor run: two threads, `sweeps` sweeps of their own block each (alternating in
    /// direction or group order), a barrier (a shared count, spun on) after every sweep.
    /// Seconds.
    fn stepped(blocks: [&[f32]; 2], sweeps: usize, read: Read) -> f64 {
        let done = AtomicUsize::new(0);
        let start = Instant::now();
        let sums: Vec<f32> = std::thread::scope(|s| {
            let done = &done;
            let run = move |w: &[f32]| {
                let mut sum = 0.0;
                for k in 0..sweeps {
                    // SAFETY: `alternate` checked for AVX-512F; the block is aligned, a multiple
                    // of 128 f32s and of 16 rows.
                    sum += unsafe {
                        match read {
                            Read::Stream => sweep(w, k % 2 == 1),
                            Read::Rows { ld, cols } => row_groups(w, ld, cols, k % 2 == 1),
                        }
                    };
                    done.fetch_add(1, Ordering::AcqRel);
                    while done.load(Ordering::Acquire) < 2 * (k + 1) {
                        std::hint::spin_loop();
                    }
                }
                sum
            };
            let other = s.spawn(move || run(blocks[1]));
            let mine = run(blocks[0]);
            vec![mine, other.join().unwrap()]
        });
        std::hint::black_box(sums);
        start.elapsed().as_secs_f64()
    }

    pub fn alternate(p: &Problem, isa: fast::Isa, runs: usize) {
        assert!(std::arch::is_x86_feature_detected!("avx512f"), "--floor needs AVX-512F");
        let s = p.shape;
        let (ld, cols) = (padded(s.hidden), s.hidden.next_multiple_of(16));
        // Each thread's half of the rows, rounded up to whole groups of 16 rows and to 128 f32s.
        let len = (s.hidden.div_ceil(2).next_multiple_of(16) * ld).next_multiple_of(128);
        let (mut buf0, mut buf1) = (Vec::new(), Vec::new());
        let blocks = [huge_block(&mut buf0, len, 1e-3), huge_block(&mut buf1, len, 2e-3)];
        let sweeps = 2 * s.steps;
        let reads = [Read::Stream, Read::Rows { ld, cols }];
        reads.iter().for_each(|&r| _ = stepped(blocks, sweeps, r));
        let (mut call, mut floor) = (Vec::new(), [Vec::new(), Vec::new()]);
        for _ in 0..runs {
            // An untimed call first, so the timed one finds the thread pool awake and its data in
            // the caches, as back-to-back calls do (the floor's threads leave neither).
            std::hint::black_box(fast::bptt_with_isa(p, isa));
            let t = Instant::now();
            std::hint::black_box(fast::bptt_with_isa(p, isa));
            call.push(t.elapsed().as_secs_f64() * 1e3);
            for (times, &r) in floor.iter_mut().zip(&reads) {
                times.push(stepped(blocks, sweeps, r) * 1e3);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let c = median(&mut call);
        let [stream, rows] = floor.map(|mut v| (median(&mut v), v[0]));
        let f = stream.0.min(rows.0);
        println!(
            "{}: call median {c:.2} ms; stepped read of 2 × {} KiB, {sweeps} sweeps, medians: as one \
             stream {:.2} ms (best {:.2}), in groups of 16 rows {:.2} ms (best {:.2}); call / the \
             faster {:.2}",
            s,
            len * 4 / 1024,
            stream.0,
            stream.1,
            rows.0,
            rows.1,
            c / f
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod floor {
    pub fn alternate(_: &bptt::Problem, _: bptt::cpu::fast::Isa, _: usize) {
        panic!("--floor needs x86-64 with AVX-512F");
    }
}
