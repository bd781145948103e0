// accumulate_outer: one step's weight-gradient term, added to the running sum
//   G += Uᵀ·V over the batch, i.e. G[r,c] += Σ_b U[b,r]·V[b,c]
// used as ∂L/∂w_qh += ∂L/∂o_tᵀ·h_t, ∂L/∂w_hh += ∂L/∂a_tᵀ·h_{t-1}, ∂L/∂w_hx += ∂L/∂a_tᵀ·x_t.
// One invocation per (r, c); U and V are row-major [B, rows] and [B, cols] blocks that start at
// u_offset and v_offset in their buffers.
// Bindings: 0 params (uniform, dynamic offset), 1 u, 2 v, 3 g [rows, cols].

struct Params {
    rows: u32,
    cols: u32,
    batch: u32,
    u_offset: u32,
    v_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.rows * p.cols {
        return;
    }
    let r = idx / p.cols;
    let c = idx % p.cols;
    var acc = g[idx];
    for (var b = 0u; b < p.batch; b++) {
        acc += u[p.u_offset + b * p.rows + r] * v[p.v_offset + b * p.cols + c];
    }
    g[idx] = acc;
}
