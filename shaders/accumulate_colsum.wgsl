// accumulate_colsum: one step's bias-gradient term, added to the running sum
//   g[r] += Σ_b U[b,r],  i.e. ∂L/∂b_h += Σ_b ∂L/∂a_t and ∂L/∂b_q += Σ_b ∂L/∂o_t
// One invocation per r; U is a block of B rows, row_stride apart, starting at u_offset.
// Bindings: 0 params (uniform, dynamic offset), 1 u, 2 g [rows].

struct Params {
    rows: u32,
    batch: u32,
    u_offset: u32,
    row_stride: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if r >= p.rows {
        return;
    }
    var acc = g[r];
    for (var b = 0u; b < p.batch; b++) {
        acc += u[p.u_offset + b * p.row_stride + r];
    }
    g[r] = acc;
}
