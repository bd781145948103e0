// backward_step: one step of the backward recursion, last step to first
//   ∂L/∂h_t = c_t·∂L/∂a_{t+1}·w_hh + ∂L/∂o_t·w_qh,   ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
// and, run once more with t = 0, ∂L/∂h0 = c_0·∂L/∂a_1·w_hh (no output term, no φ').
// In layer mode (upstream = 1) the output term is replaced by the upstream gradient g_t that
// the rest of a larger model sends into h_t, read from binding 3 as [T,B,h]:
//   ∂L/∂h_t = c_t·∂L/∂a_{t+1}·w_hh + g_t.
// c_t = 1 is full BPTT; 0 cuts the gradient (segments), 1/(1−p) or 0 randomises truncation.
// One invocation per (b, i): it walks column i of w_hh and w_qh, so neighbouring invocations
// read neighbouring addresses.
// φ'(a_t) is taken from h_t: 1 for identity, 1 − h_t² for tanh, [h_t > 0] for relu.
// Bindings: 0 params (uniform, dynamic offset), 1 w_hh [h,h], 2 w_qh [q,h], 3 grad_o [T,B,q]
//           (layer mode: g [T,B,h]),
//           4 h [T+1,B,h], 5 grad_a [T+2,B,h] (slot t is ∂L/∂a_t; slot T+1 is kept zero),
//           6 grad_h [T+1,B,h] (slot t is ∂L/∂h_t; slot 0 is ∂L/∂h0).

struct Params {
    t: u32,          // 0..T; 0 computes ∂L/∂h0
    batch: u32,
    hidden: u32,
    output: u32,
    activation: u32, // ACT_IDENTITY, ACT_TANH or ACT_RELU (the prelude)
    carry: f32,      // c_t
    upstream: u32,   // 1: layer mode, binding 3 holds g_t [T,B,h], added as is
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w_hh: array<f32>;
@group(0) @binding(2) var<storage, read> w_qh: array<f32>;
@group(0) @binding(3) var<storage, read> grad_o: array<f32>;
@group(0) @binding(4) var<storage, read> h: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_a: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_h: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.batch * p.hidden {
        return;
    }
    let b = idx / p.hidden;
    let i = idx % p.hidden;
    let next_row = ((p.t + 1u) * p.batch + b) * p.hidden;
    var acc = 0.0;
    for (var j = 0u; j < p.hidden; j++) {
        acc += grad_a[next_row + j] * w_hh[j * p.hidden + i];
    }
    acc *= p.carry;
    let row = (p.t * p.batch + b) * p.hidden;
    if p.t > 0u {
        if p.upstream == 1u {
            acc += grad_o[((p.t - 1u) * p.batch + b) * p.hidden + i];
        } else {
            let o_row = ((p.t - 1u) * p.batch + b) * p.output;
            for (var k = 0u; k < p.output; k++) {
                acc += grad_o[o_row + k] * w_qh[k * p.hidden + i];
            }
        }
        grad_a[row + i] = acc * dphi_from_h(p.activation, h[row + i]);
    }
    grad_h[row + i] = acc;
}
