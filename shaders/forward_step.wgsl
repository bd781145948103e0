// forward_step: one step of the recurrence, the textbook way (input and recurrent terms together)
//   a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ + b_h,   h_t = φ(a_t)
// One invocation per (b, i) output. h holds T+1 slots: slot 0 is h0, slot t is h_t.
// Bindings: 0 params (uniform, dynamic offset), 1 x [T,B,d], 2 w_hx [h,d], 3 w_hh [h,h],
//           4 b_h [h] (zeros when biases are off), 5 h [T+1,B,h] (reads slot t-1, writes slot t).

struct Params {
    t: u32,          // the math's step index, 1..T
    batch: u32,
    input: u32,
    hidden: u32,
    activation: u32, // ACT_IDENTITY, ACT_TANH or ACT_RELU (the prelude)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w_hx: array<f32>;
@group(0) @binding(3) var<storage, read> w_hh: array<f32>;
@group(0) @binding(4) var<storage, read> b_h: array<f32>;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.batch * p.hidden {
        return;
    }
    let b = idx / p.hidden;
    let i = idx % p.hidden;
    let x_row = ((p.t - 1u) * p.batch + b) * p.input;
    let h_prev_row = ((p.t - 1u) * p.batch + b) * p.hidden;
    var acc = b_h[i];
    for (var j = 0u; j < p.input; j++) {
        acc += x[x_row + j] * w_hx[i * p.input + j];
    }
    for (var j = 0u; j < p.hidden; j++) {
        acc += h[h_prev_row + j] * w_hh[i * p.hidden + j];
    }
    acc = phi(p.activation, acc);
    h[(p.t * p.batch + b) * p.hidden + i] = acc;
}
