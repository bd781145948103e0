// The machine limits behind docs/performance.md (the fast CPU path's floors): peak f32 FMA
// throughput, the read bandwidth of a GEMV-like sweep (aligned 64-byte loads into 8
// accumulators) over a buffer of a given size per thread, from L1, L2, L3 or memory, and the
// rate of a recurrence step's product at B = 32 with nothing else around it (below). One or two
// threads, each pinned to its own core with its own buffer; best of many trials, so a busy
// machine's interruptions drop out. x86-64 with AVX-512F only.
//
// The step product: each thread does C[32, n] += A[32, 1024]·W[1024, n] 256 times over, W its
// block of w_hhᵀ packed in panels of 64 columns (the fast path's layout: n = 512 columns, 2 MiB,
// is a thread's half at h = 1024), in 4×64 register tiles over blocks of 128 rows of W, the walk
// reversed every step and the next block prefetched into L2 as the fast path does; A is shared
// and never written, and no thread waits for the other. So it is the product alone, with the
// steps' data in the caches as they are: an upper bound on what the recurrences can do per step.
//
// The stepped read: two threads each sweep their own 2080 KiB (a thread's half of w_hh at h =
// 1024, padded rows) in alternating direction, 512 times (the two passes of T = 256), and wait
// for each other after every sweep on a shared counter, as the recurrences' team does: the
// streaming floor of the B = 1 passes with the one thing a recurrence cannot drop, the step
// boundary. Timed as a whole (not each thread's best), median and best of the trials. The same
// bytes are also read as 512 rows of 1040 floats sixteen rows at a time (sixteen streams, each
// row front to back, one accumulator per row, the groups in alternating order): on machine B
// this reads them up to twice as fast as the one stream, so the floor is the faster of the two.
//
// The stepped kernels: the same stepped loop with the B = 1 recurrences' products in place of the
// read, as the fast path computes them (`simd::matvec_acc` and `simd::rows_axpy`): the forward's
// sixteen dot products at a time (a row of h_{t-1} times each of 16 rows of w_hh), and the
// backward's row form (16 rows' multiples of a vector added into a 1024-float sum in four chains
// of FMAs). The vector is shared and never written, and nothing else happens in a step: what the
// B = 1 passes could do per step at best, with their own kernels' loads and FMAs.
//
// The stepped loop's blocks are fresh mappings in 2 MiB pages, as the fast path asks for its large
// buffers: a huge page falls on every L2 set alike, where 4 KiB pages fall wherever the kernel
// puts them, and a block as large as L2 loses the lines of its crowded sets every sweep. The rows
// read and the kernels are then run again in 4 KiB pages, for comparison.
//
//   gcc -O3 -march=native -pthread scripts/cpu_floor.c -o /tmp/cpu_floor && /tmp/cpu_floor
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    int cpu, mode; // mode 0: FMA peak; 1: read sweep, same order; 2: alternating direction; 3: step
                // product; 4: stepped loop (a read or a kernel per sweep, `stepped_kind`; a barrier
                // after each sweep); 5: a conversion (`convert_kind`)
    size_t bytes;
    double best, work; // best seconds per trial; FLOPs or bytes per trial
    float sink;
} job_t;

static pthread_barrier_t barrier;

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static void sweep(const float *w, size_t n, int reverse, __m512 v, __m512 *acc) {
    if (!reverse) {
        for (size_t i = 0; i < n; i += 128)
            for (int k = 0; k < 8; k++) acc[k] = _mm512_fmadd_ps(_mm512_load_ps(w + i + 16 * k), v, acc[k]);
    } else {
        for (size_t i = n; i > 0; i -= 128)
            for (int k = 0; k < 8; k++) acc[k] = _mm512_fmadd_ps(_mm512_load_ps(w + i - 128 + 16 * k), v, acc[k]);
    }
}

enum { NB = 32, K = 1024, KC = 128, STEPS = 256 };

// c[i][0..64] += sum_l a[i][l] * w[l*64 + 0..64] for 4 rows i (a at stride K, c at stride n);
// the first `pf` lines of `next` are prefetched into L2, one per l.
static void tile(const float *a, const float *w, float *c, int n, const float *next, int pf) {
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    for (int l = 0; l < KC; l++) {
        if (l < pf) _mm_prefetch((const char *)(next + 16 * l), _MM_HINT_T1);
        __m512 b[4];
        for (int v = 0; v < 4; v++) b[v] = _mm512_load_ps(w + 64 * l + 16 * v);
        for (int i = 0; i < 4; i++) {
            __m512 x = _mm512_set1_ps(a[i * K + l]);
            for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(x, b[v], acc[i][v]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < 4; v++) {
            float *p = c + i * n + 16 * v;
            _mm512_storeu_ps(p, _mm512_add_ps(acc[i][v], _mm512_loadu_ps(p)));
        }
}

static const float *shared_a;

enum { STEPPED_SWEEPS = 512, STEPPED_TRIALS = 41 };
static atomic_size_t stepped_done;
static double stepped_times[STEPPED_TRIALS];
static int stepped_sync; // 1: wait for each other after every sweep; 0: only at the start
// What each sweep does: 0, a read as one stream; 1, a read in groups of 16 rows (`row_groups`);
// 2, the forward's dot products (`dot_groups`); 3, the backward's row form (`axpy_groups`).
static int stepped_kind;
enum { STEPPED_STREAM, STEPPED_ROWS, STEPPED_DOT, STEPPED_AXPY };

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The block as ROWS_LD-float rows (the fast path's padded stride at h = 1024), of which the first
// 1024 floats are read, 16 rows at a time, the groups last to first when `reverse`.
enum { ROWS_LD = 1040, ROWS_COLS = 1024 };
static void row_groups(const float *w, size_t n, int reverse, __m512 *acc) {
    size_t groups = n / ROWS_LD / 16;
    for (size_t g0 = 0; g0 < groups; g0++) {
        const float *r = w + (reverse ? groups - 1 - g0 : g0) * 16 * ROWS_LD;
        __m512 a[16];
        for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
        for (int j = 0; j < ROWS_COLS; j += 16)
            for (int i = 0; i < 16; i++) a[i] = _mm512_add_ps(_mm512_load_ps(r + i * ROWS_LD + j), a[i]);
        for (int i = 0; i < 16; i++) acc[i % 8] = _mm512_add_ps(acc[i % 8], a[i]);
    }
}

// out[i] += w[i]·v for the block's rows (ROWS_COLS of each), 16 rows at a time, the groups last
// to first when `reverse`: the forward's product at B = 1.
static void dot_groups(const float *w, size_t n, int reverse, const float *v, float *out) {
    size_t groups = n / ROWS_LD / 16;
    for (size_t g0 = 0; g0 < groups; g0++) {
        size_t g = reverse ? groups - 1 - g0 : g0;
        const float *r = w + g * 16 * ROWS_LD;
        __m512 a[16];
        for (int i = 0; i < 16; i++) a[i] = _mm512_setzero_ps();
        for (int j = 0; j < ROWS_COLS; j += 16) {
            __m512 x = _mm512_load_ps(v + j);
            for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(_mm512_load_ps(r + i * ROWS_LD + j), x, a[i]);
        }
        for (int i = 0; i < 16; i++) out[g * 16 + i] += _mm512_reduce_add_ps(a[i]);
    }
}

// sum = Σ_i g[i]·w[i] over the block's rows, 16 rows at a time, 64 columns (four chains of FMAs)
// per pass over a group, the groups (and the rows in each) last to first when `reverse`: the
// backward's row form at B = 1.
static void axpy_groups(const float *w, size_t n, int reverse, const float *g, float *sum) {
    size_t groups = n / ROWS_LD / 16;
    for (int j = 0; j < ROWS_COLS; j++) sum[j] = 0;
    for (size_t q0 = 0; q0 < groups; q0++) {
        size_t q = reverse ? groups - 1 - q0 : q0;
        long step = reverse ? -ROWS_LD : ROWS_LD;
        const float *first = w + q * 16 * ROWS_LD + (reverse ? 15 * ROWS_LD : 0);
        __m512 f[16];
        for (int i = 0; i < 16; i++) f[i] = _mm512_set1_ps(g[q * 16 + (reverse ? 15 - i : i)]);
        for (int j = 0; j < ROWS_COLS; j += 64) {
            __m512 a[4];
            for (int c = 0; c < 4; c++) a[c] = _mm512_load_ps(sum + j + 16 * c);
            for (int i = 0; i < 16; i++)
                for (int c = 0; c < 4; c++) a[c] = _mm512_fmadd_ps(_mm512_load_ps(first + i * step + j + 16 * c), f[i], a[c]);
            for (int c = 0; c < 4; c++) _mm512_store_ps(sum + j + 16 * c, a[c]);
        }
    }
}

// Mode 4: STEPPED_SWEEPS alternating sweeps of this thread's buffer, each followed by waiting
// until both threads have finished that sweep; thread 0 records each trial's wall time.
// The stepped loop's blocks: 1, in 2 MiB pages (asked for with madvise before the first touch, as
// the fast path asks for its large buffers); 0, in 4 KiB pages.
static int stepped_huge = 1;
enum { HUGE_BYTES = 2 << 20 };

// `bytes` from a 2 MiB boundary, in huge pages or not: a fresh mapping (never pages another
// block had), untouched until the caller writes it; `block_free` unmaps it.
typedef struct {
    char *map;
    size_t len;
    float *w;
} block_t;

static block_t block_alloc(size_t bytes, int huge) {
    size_t whole = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    block_t b = {.len = whole + HUGE_BYTES};
    b.map = mmap(NULL, b.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b.map == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    b.w = (float *)(b.map + (HUGE_BYTES - (size_t)b.map % HUGE_BYTES) % HUGE_BYTES);
    madvise(b.w, whole, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return b;
}

static void block_free(block_t b) { munmap(b.map, b.len); }

static void stepped_read(job_t *j) {
    size_t n = j->bytes / 4;
    block_t block = block_alloc(j->bytes, stepped_huge);
    float *w = block.w;
    for (size_t i = 0; i < n; i++) w[i] = 1e-3f * (i % 7);
    __m512 v = _mm512_set1_ps(1.0f), acc[8];
    for (int k = 0; k < 8; k++) acc[k] = _mm512_setzero_ps();
    // The kernels' vector (h_{t-1} or g_t), shared by both threads, and this thread's outputs.
    static float vec[ROWS_COLS] __attribute__((aligned(64)));
    float *out = aligned_alloc(64, ROWS_COLS * 4);
    for (int i = 0; i < ROWS_COLS; i++) vec[i] = 1e-3f * (i % 5), out[i] = 0;
    for (int t = 0; t < STEPPED_TRIALS + 2; t++) {
        pthread_barrier_wait(&barrier);
        if (j->cpu == 0) atomic_store(&stepped_done, 0);
        pthread_barrier_wait(&barrier);
        double t0 = now();
        for (size_t s = 0; s < STEPPED_SWEEPS; s++) {
            switch (stepped_kind) {
            case STEPPED_STREAM: sweep(w, n, s & 1, v, acc); break;
            case STEPPED_ROWS: row_groups(w, n, s & 1, acc); break;
            case STEPPED_DOT: dot_groups(w, n, s & 1, vec, out); break;
            case STEPPED_AXPY: axpy_groups(w, n, s & 1, vec, out); break;
            }
            if (stepped_sync) {
                atomic_fetch_add(&stepped_done, 1);
                while (atomic_load(&stepped_done) < 2 * (s + 1)) _mm_pause();
            }
        }
        pthread_barrier_wait(&barrier); // the trial ends when both threads are done
        if (j->cpu == 0 && t >= 2) stepped_times[t - 2] = now() - t0;
    }
    float sink = 0;
    for (int k = 0; k < 8; k++) sink += _mm512_reduce_add_ps(acc[k]);
    j->sink = sink + out[0];
    j->work = 0;
    j->best = 1;
    block_free(block);
    free(out);
}

// Mode 5: the conversions (see the top). Each thread converts its half; thread 0 records each
// trial's wall time, from a barrier to both threads done.
enum { CONVERT_TRIALS = 41, STATES = 256 * 32 * 1024 };
enum { CONVERT_IN, CONVERT_OUT, CONVERT_FRESH };
static int convert_kind;
static double convert_times[CONVERT_TRIALS];

static void narrow(const double *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i += 4) _mm_store_ps(dst + i, _mm256_cvtpd_ps(_mm256_load_pd(src + i)));
}

static void widen(const float *src, double *dst, size_t n) {
    for (size_t i = 0; i < n; i += 4) _mm256_store_pd(dst + i, _mm256_cvtps_pd(_mm_load_ps(src + i)));
}

static void convert(job_t *j) {
    int fresh_out = convert_kind == CONVERT_FRESH;
    size_t rows = ROWS_COLS / 2, n = fresh_out ? STATES / 2 : rows * ROWS_COLS, n32 = fresh_out ? n : rows * ROWS_LD;
    double *f64 = aligned_alloc(64, (fresh_out ? 1 : n) * 8);
    float *f32 = aligned_alloc(64, n32 * 4);
    for (size_t i = 0; !fresh_out && i < n; i++) f64[i] = 1e-3 * (i % 7);
    for (size_t i = 0; i < n32; i++) f32[i] = 1e-3f * (i % 5);
    for (int t = 0; t < CONVERT_TRIALS + 2; t++) {
        block_t fresh = {0};
        if (fresh_out) fresh = block_alloc(n * 8, 0);
        pthread_barrier_wait(&barrier);
        double t0 = now();
        switch (convert_kind) {
        case CONVERT_IN:
            for (size_t r = 0; r < rows; r++) narrow(f64 + r * ROWS_COLS, f32 + r * ROWS_LD, ROWS_COLS);
            break;
        case CONVERT_OUT: widen(f32, f64, n); break;
        case CONVERT_FRESH: widen(f32, (double *)fresh.w, n); break;
        }
        pthread_barrier_wait(&barrier);
        if (j->cpu == 0 && t >= 2) convert_times[t - 2] = now() - t0;
        if (fresh_out) {
            j->sink += ((double *)fresh.w)[n / 3];
            block_free(fresh);
        }
    }
    j->sink += f32[1] + (fresh_out ? 0 : f64[1]);
    j->work = 0;
    j->best = 1;
    free(f64);
    free(f32);
}

static void step_product(job_t *j) {
    int n = (int)(j->bytes / (4 * K)), panels = n / 64, blocks = K / KC;
    float *w = aligned_alloc(64, (size_t)K * n * 4), *c = aligned_alloc(64, (size_t)NB * n * 4);
    for (size_t i = 0; i < (size_t)K * n; i++) w[i] = 1e-3f * (i % 7);
    for (int i = 0; i < NB * n; i++) c[i] = 0;
    j->work = 2.0 * NB * K * n * STEPS;
    for (int t = 0; t < 5; t++) {
        pthread_barrier_wait(&barrier);
        double t0 = now();
        for (int s = 0; s < STEPS; s++) {
            int rev = s & 1, total = panels * blocks;
            for (int q = 0; q < total; q++) {
                int o = rev ? total - 1 - q : q, o2 = rev ? total - 2 - q : q + 1;
                int p = o / blocks, kb = o % blocks;
                const float *blk = w + (size_t)p * K * 64 + kb * KC * 64;
                const float *next = (q + 1 < total) ? w + (size_t)(o2 / blocks) * K * 64 + (o2 % blocks) * KC * 64 : blk;
                for (int b = 0; b < NB; b += 4)
                    tile(shared_a + b * K + kb * KC, blk, c + b * n + 64 * p, n, next + (b / 4) * 1024, q + 1 < total ? 64 : 0);
            }
        }
        double dt = now() - t0;
        if (dt < j->best) j->best = dt;
    }
    j->sink = c[0];
    free(w);
    free(c);
}

static void *run(void *p) {
    job_t *j = p;
    pin(j->cpu);
    j->best = 1e9;
    float sink = 0;
    if (j->mode == 3) {
        step_product(j);
        return NULL;
    }
    if (j->mode == 4) {
        stepped_read(j);
        return NULL;
    }
    if (j->mode == 5) {
        convert(j);
        return NULL;
    }
    if (j->mode == 0) {
        const int iters = 1000000;
        j->work = 2.0 * iters * 12 * 16;
        for (int t = 0; t < 30; t++) {
            __m512 acc[12], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
            for (int k = 0; k < 12; k++) acc[k] = _mm512_set1_ps(k);
            pthread_barrier_wait(&barrier);
            double t0 = now();
            for (int i = 0; i < iters; i++)
                for (int k = 0; k < 12; k++) acc[k] = _mm512_fmadd_ps(acc[k], x, y);
            double dt = now() - t0;
            if (dt < j->best) j->best = dt;
            for (int k = 0; k < 12; k++) sink += _mm512_reduce_add_ps(acc[k]);
        }
    } else {
        size_t n = j->bytes / 4;
        float *w = aligned_alloc(64, j->bytes);
        for (size_t i = 0; i < n; i++) w[i] = 1e-3f * (i % 7);
        int sweeps = (int)(2e7 / j->bytes) + 2;
        j->work = (double)j->bytes * sweeps;
        __m512 v = _mm512_set1_ps(1.0f), acc[8];
        for (int k = 0; k < 8; k++) acc[k] = _mm512_setzero_ps();
        for (int r = 0; r < 4; r++) sweep(w, n, r & 1 && j->mode == 2, v, acc);
        for (int t = 0; t < 200; t++) {
            pthread_barrier_wait(&barrier);
            double t0 = now();
            for (int r = 0; r < sweeps; r++) sweep(w, n, r & 1 && j->mode == 2, v, acc);
            double dt = now() - t0;
            if (dt < j->best) j->best = dt;
        }
        for (int k = 0; k < 8; k++) sink += _mm512_reduce_add_ps(acc[k]);
        free(w);
    }
    j->sink = sink;
    return NULL;
}

// Total rate over `threads` threads (work per second, each thread's best trial).
static double measure(int threads, int mode, size_t bytes) {
    pthread_t t[2];
    job_t j[2];
    pthread_barrier_init(&barrier, NULL, threads);
    for (int i = 0; i < threads; i++) {
        j[i] = (job_t){.cpu = i, .mode = mode, .bytes = bytes};
        pthread_create(&t[i], NULL, run, &j[i]);
    }
    double rate = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        rate += j[i].work / j[i].best;
    }
    pthread_barrier_destroy(&barrier);
    return rate;
}

int main(void) {
    double peak[3];
    for (int threads = 1; threads <= 2; threads++) {
        peak[threads] = measure(threads, 0, 0) / 1e9;
        printf("peak FMA, %d thread(s): %6.1f GFLOP/s\n", threads, peak[threads]);
    }
    float *a = aligned_alloc(64, NB * K * 4);
    for (int i = 0; i < NB * K; i++) a[i] = 1e-3f * (i % 5);
    shared_a = a;
    for (int threads = 1; threads <= 2; threads++)
        for (int n = 256; n <= 512; n *= 2) {
            double r = measure(threads, 3, (size_t)n * K * 4) / 1e9;
            printf("step product B=32, %d thread(s), %d columns (%d KiB of W) each: %6.1f GFLOP/s, %.0f%% of peak\n",
                   threads, n, n * K * 4 / 1024, r, 100 * r / peak[threads]);
        }
    const size_t kib[] = {16, 256, 512, 768, 1024, 2048, 2080, 4096, 4160, 65536};
    for (int threads = 1; threads <= 2; threads++)
        for (int mode = 1; mode <= 2; mode++)
            for (size_t i = 0; i < sizeof kib / sizeof kib[0]; i++)
                printf("read %s, %d thread(s), %6zu KiB each: %6.1f GB/s in all\n",
                       mode == 1 ? "same order " : "alternating", threads, kib[i],
                       measure(threads, mode, kib[i] * 1024) / 1e9);
    for (stepped_kind = STEPPED_STREAM; stepped_kind <= STEPPED_ROWS; stepped_kind++)
        for (stepped_sync = 0; stepped_sync <= 1; stepped_sync++) {
            measure(2, 4, 2080 * 1024);
            qsort(stepped_times, STEPPED_TRIALS, sizeof(double), by_value);
            printf("%s, 2 threads, 2080 KiB each in 2 MiB pages %s, %d alternating sweeps%s: median %.2f ms, best %.2f ms "
                   "(%.1f GB/s in all at the median)\n",
                   stepped_sync ? "stepped read " : "together read",
                   stepped_kind == STEPPED_ROWS ? "in groups of 16 rows" : "as one stream", STEPPED_SWEEPS,
                   stepped_sync ? ", waiting for each other after each" : " timed as a whole",
                   1e3 * stepped_times[STEPPED_TRIALS / 2], 1e3 * stepped_times[0],
                   2.0 * 2080 * 1024 * STEPPED_SWEEPS / stepped_times[STEPPED_TRIALS / 2] / 1e9);
        }
    stepped_sync = 1;
    for (stepped_huge = 1; stepped_huge >= 0; stepped_huge--)
        for (stepped_kind = STEPPED_ROWS; stepped_kind <= STEPPED_AXPY; stepped_kind++) {
            if (stepped_huge && stepped_kind == STEPPED_ROWS) continue; // printed above
            measure(2, 4, 2080 * 1024);
            qsort(stepped_times, STEPPED_TRIALS, sizeof(double), by_value);
            const char *what[] = {"", "read in groups of 16 rows", "forward, 16 dot products at a time",
                                  "backward, the row form over 16 rows"};
            printf("stepped %s, 2 threads, 512 rows of w_hh each in %s pages, %d alternating sweeps, "
                   "waiting for each other after each: median %.2f ms, best %.2f ms (per %d: %.2f ms)\n",
                   what[stepped_kind], stepped_huge ? "2 MiB" : "4 KiB", STEPPED_SWEEPS,
                   1e3 * stepped_times[STEPPED_TRIALS / 2], 1e3 * stepped_times[0], STEPPED_SWEEPS / 2,
                   0.5e3 * stepped_times[STEPPED_TRIALS / 2]);
        }
    const char *conversions[] = {"w_hh in: 8 MiB of f64 into f32 rows at the padded stride",
                                 "dL/dw_hh out: 4 MiB of f32 into 8 MiB of f64, the same destination every trial",
                                 "the states out at B = 32: 32 MiB of f32 into 64 MiB of f64 in fresh 4 KiB pages"};
    for (convert_kind = CONVERT_IN; convert_kind <= CONVERT_FRESH; convert_kind++) {
        measure(2, 5, 0);
        qsort(convert_times, CONVERT_TRIALS, sizeof(double), by_value);
        printf("conversion, 2 threads, %s: median %.3f ms, best %.3f ms\n", conversions[convert_kind],
               1e3 * convert_times[CONVERT_TRIALS / 2], 1e3 * convert_times[0]);
    }
    return 0;
}
