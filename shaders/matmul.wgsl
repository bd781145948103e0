// matmul: one tiled matrix product, reused for every time-parallel product of the fused schedule
//   C = A·B (+ bias) (+ C),   C[m,n] = Σ_k A[m,k]·B[k,n]
// e.g. x·w_hxᵀ + b_h for all T·B rows, h·w_qhᵀ, ∂L/∂o·w_qh, and the weight gradients
// ∂L/∂w_hh = ∂L/∂Aᵀ·H_prev, ∂L/∂w_hx = ∂L/∂Aᵀ·X, ∂L/∂w_qh = ∂L/∂Oᵀ·H.
// A and B are read through (offset, row stride, column stride), so a transpose is just a swap of
// strides; C is row-major [M, N] at c_offset.
// Each workgroup computes a 64×64 tile of C (tiles numbered row by row, the workgroup grid
// linearised, so any number of tiles fits the per-dimension limit); each of its 256 invocations
// a 4×4 block, from 16-deep slices of A and B staged in workgroup memory. Sums run in a fixed
// order (no atomics).
// Bindings: 0 params (uniform, dynamic offset), 1 a, 2 b, 3 c, 4 bias [N] (read when add_bias).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_offset: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_offset: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    c_offset: u32,
    accumulate: u32, // 1: C += A·B
    add_bias: u32,   // 1: C[m,n] += bias[n]
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [DEPTH][TILE]: a_tile[kk * TILE + mm]
var<workgroup> b_tile: array<f32, 1024>; // [DEPTH][TILE]: b_tile[kk * TILE + nn]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tiles_n = (p.n + TILE - 1u) / TILE;
    let tile = flat_workgroup(wid, nwg);
    if tile >= tiles_n * ((p.m + TILE - 1u) / TILE) {
        return; // workgroup-uniform: the barriers below stay in uniform control flow
    }
    let tile_m = (tile / tiles_n) * TILE;
    let tile_n = (tile % tiles_n) * TILE;
    // Sums over k run in blocks of 256 (16 slices) whose subtotals are added to the total:
    // the rounding error of a sum of K terms then grows like 256 + K/256 rather than K, which
    // matters for the weight gradients, whose K is every (t, b) row.
    var acc: array<array<f32, 4>, 4>;
    for (var kb = 0u; kb < p.k; kb += 256u) {
    var block: array<array<f32, 4>, 4>;
    for (var k0 = kb; k0 < min(p.k, kb + 256u); k0 += DEPTH) {
        // Stage A[tile_m.., k0..] and B[k0.., tile_n..]: 1024 values each, 4 per invocation.
        // Neighbouring invocations take neighbouring addresses along whichever axis has stride 1.
        for (var e = 0u; e < 4u; e++) {
            let idx = li + e * 256u;
            var kk: u32;
            var mm: u32;
            if p.a_col_stride == 1u {
                kk = idx % DEPTH;
                mm = idx / DEPTH;
            } else {
                kk = idx / TILE;
                mm = idx % TILE;
            }
            let gm = tile_m + mm;
            let gk = k0 + kk;
            var va = 0.0;
            if gm < p.m && gk < p.k {
                va = a[p.a_offset + gm * p.a_row_stride + gk * p.a_col_stride];
            }
            a_tile[kk * TILE + mm] = va;

            var nn: u32;
            if p.b_col_stride == 1u {
                kk = idx / TILE;
                nn = idx % TILE;
            } else {
                kk = idx % DEPTH;
                nn = idx / DEPTH;
            }
            let gn = tile_n + nn;
            let gk2 = k0 + kk;
            var vb = 0.0;
            if gn < p.n && gk2 < p.k {
                vb = b[p.b_offset + gk2 * p.b_row_stride + gn * p.b_col_stride];
            }
            b_tile[kk * TILE + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * TILE + lid.y * 4u + i];
                bv[i] = b_tile[kk * TILE + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    block[i][j] += av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            acc[i][j] += block[i][j];
        }
    }
    }
    for (var i = 0u; i < 4u; i++) {
        let gm = tile_m + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let gn = tile_n + lid.x * 4u + j;
            if gm < p.m && gn < p.n {
                let at = p.c_offset + gm * p.n + gn;
                var v = acc[i][j];
                if p.add_bias == 1u {
                    v += bias[gn];
                }
                if p.accumulate == 1u {
                    v += c[at];
                }
                c[at] = v;
            }
        }
    }
}
