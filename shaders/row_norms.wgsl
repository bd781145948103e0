// row_norms: out[r] = ‖M[first_row + r]‖ for each of `rows` rows of length n, e.g.
//   grad_h_norm[t] = ‖∂L/∂h_t‖ (Frobenius over the batch: a row is one step's [B, h] block)
// One workgroup of 256 invocations per row: fixed strided partial sums of squares, then a tree
// reduction in workgroup memory (fixed order, so results repeat bit for bit).
// Bindings: 0 params (uniform, dynamic offset), 1 m, 2 out [rows].

struct Params {
    rows: u32,
    n: u32,          // row length
    first_row: u32,  // e.g. 1 to skip grad_h's slot 0 (∂L/∂h0)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> scratch: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if r >= p.rows {
        return;
    }
    let base = (p.first_row + r) * p.n;
    var part = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = m[base + i];
        part += v * v;
    }
    scratch[lid] = part;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            scratch[lid] += scratch[lid + stride];
        }
    }
    if lid == 0u {
        out[r] = sqrt(scratch[0]);
    }
}
