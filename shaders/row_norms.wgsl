// row_norms: out[out_offset + r] = ‖M[first_row + r]‖ for each of `rows` rows of length n, e.g.
//   grad_h_norm[t] = ‖∂L/∂h_t‖ (Frobenius over the batch: a row is one step's [B, h] block),
//   and ‖∂L/∂w‖ of each parameter gradient for clipping (one row: the whole tensor)
// computed as m·sqrt(Σ (v/m)²) with m = max |v|, so entries beyond 1.8e19 (whose squares
// overflow f32) still give a finite norm; a NaN or Inf entry gives a non-finite norm.
// One workgroup of 256 invocations per row: fixed strided partial results, then tree
// reductions in workgroup memory (fixed order, so results repeat bit for bit).
// Bindings: 0 params (uniform, dynamic offset), 1 m, 2 out [rows].

struct Params {
    rows: u32,
    n: u32,          // row length
    first_row: u32,  // e.g. 1 to skip grad_h's slot 0 (∂L/∂h0)
    out_offset: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
// scratch and reduce are the prelude's.

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = flat_workgroup(wid, nwg);
    if r >= p.rows {
        return;
    }
    let base = (p.first_row + r) * p.n;
    var part = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        part = max(part, abs(m[base + i]));
    }
    scratch[lid] = part;
    let big = reduce(lid, 1u, WG);
    part = 0.0;
    if big > 0.0 {
        for (var i = lid; i < p.n; i += WG) {
            let v = m[base + i] / big;
            part += v * v;
        }
    }
    scratch[lid] = part;
    let sum = reduce(lid, 0u, WG);
    // max() may drop NaN and compilers may assume floats are finite, so find NaN and Inf by
    // their bits (exponent all ones) and make the norm NaN then.
    part = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        if (bitcast<u32>(m[base + i]) & 0x7f800000u) == 0x7f800000u {
            part += 1.0;
        }
    }
    scratch[lid] = part;
    let bad = reduce(lid, 0u, WG);
    if lid == 0u {
        var norm = big * sqrt(sum);
        if bad > 0.0 {
            norm = bitcast<f32>(0x7fc00000u); // NaN
        }
        out[p.out_offset + r] = norm;
    }
}
