// reduce_sum: out[out_index] = Σ_i values[i] (or sqrt of the sum with `sqrt_result`), e.g.
//   L = Σ_rows loss_rows   (each row already weighted by 1/(T·B))
// One workgroup of 256 invocations: each sums a fixed strided subset in order, then a tree
// reduction in workgroup memory; the order never changes, so neither does the result.
// Bindings: 0 params (uniform, dynamic offset), 1 values [n], 2 out [..].

struct Params {
    n: u32,
    out_index: u32,
    sqrt_result: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
// scratch and reduce are the prelude's.

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var part = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        part += values[i];
    }
    scratch[lid] = part;
    let sum = reduce(lid, 0u, WG);
    if lid == 0u {
        var total = sum;
        if p.sqrt_result == 1u {
            total = sqrt(total);
        }
        out[p.out_index] = total;
    }
}
