// output_step: the output layer at one step
//   o_t = h_t·w_qhᵀ + b_q
// One invocation per (b, k) output.
// Bindings: 0 params (uniform, dynamic offset), 1 h [T+1,B,h] (slot t is h_t), 2 w_qh [q,h],
//           3 b_q [q] (zeros when biases are off), 4 o [T,B,q] (writes row t-1).

struct Params {
    t: u32,       // the math's step index, 1..T
    batch: u32,
    hidden: u32,
    output: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> w_qh: array<f32>;
@group(0) @binding(3) var<storage, read> b_q: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.batch * p.output {
        return;
    }
    let b = idx / p.output;
    let k = idx % p.output;
    let h_row = (p.t * p.batch + b) * p.hidden;
    var acc = b_q[k];
    for (var i = 0u; i < p.hidden; i++) {
        acc += h[h_row + i] * w_qh[k * p.hidden + i];
    }
    o[((p.t - 1u) * p.batch + b) * p.output + k] = acc;
}
