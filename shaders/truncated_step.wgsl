// truncated_step: one backward step of BPTT truncated K steps back from each loss term
//   lane m (1..K) holds ∂L/∂a_t restricted to loss terms s with s − t < m:
//     lane_m(t) = φ'(a_t) ⊙ (gq_t + [m ≥ 2]·lane_{m−1}(t+1)·w_hh)        (gq_t = ∂L/∂o_t·w_qh)
//   lane K is the truncated ∂L/∂a_t; its pre-φ' value is the truncated ∂L/∂h_t (written to
//   grad_h), and with t = 0 (mode 2), ∂L/∂h0 = lane_K(1)·w_hh, the model's formula applied
//   to the truncated ∂L/∂a_1.
// The K lanes of every batch entry are extra rows: state holds [slots, B, K, h]. One invocation
// per (b, lane, i); for each j neighbouring invocations read neighbouring addresses of row j
// of w_hh. This costs K matrix-vector products per step: a diagnostic, not a fast path.
// Bindings: 0 params (uniform, dynamic offset), 1 w_hh [h,h], 2 gq [T,B,h],
//           3 state [T+2,B,K,h] (lanes; reads slot t+1, writes slot t), 4 grad_h [T+1,B,h],
//           5 h [T+1,B,h] (for φ').

struct Params {
    mode: u32,       // 1 a step t ≥ 1, 2 ∂L/∂h0
    batch: u32,
    hidden: u32,
    activation: u32, // ACT_IDENTITY, ACT_TANH or ACT_RELU (the prelude)
    lanes: u32,      // K
    t: u32,          // the math's step
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w_hh: array<f32>;
@group(0) @binding(2) var<storage, read> gq: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_h: array<f32>;
@group(0) @binding(5) var<storage, read> h: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let k = p.lanes;
    let n = p.hidden;
    // Mode 2 computes one row per batch entry; mode 1 one row per (b, lane).
    var rows = p.batch * k;
    if p.mode == 2u {
        rows = p.batch;
    }
    if idx >= rows * n {
        return;
    }
    let i = idx % n;
    let r = idx / n;
    var b = r / k;
    var m = r % k + 1u; // lane 1..K
    if p.mode == 2u {
        b = r;
        m = k + 1u; // so that it reads lane K
    }
    // lane_{m−1} at step t+1 (for mode 2: lane K at step 1), zero for m = 1.
    var carried = 0.0;
    if m >= 2u {
        let v = (((p.t + 1u) * p.batch + b) * k + (m - 2u)) * n;
        for (var j = 0u; j < n; j++) {
            carried += state[v + j] * w_hh[j * n + i];
        }
    }
    let at = (p.t * p.batch + b) * n + i;
    if p.mode == 2u {
        grad_h[at] = carried;
        return;
    }
    let grad_h_ti = gq[((p.t - 1u) * p.batch + b) * n + i] + carried;
    state[((p.t * p.batch + b) * k + (m - 1u)) * n + i] = grad_h_ti * dphi_from_h(p.activation, h[at]);
    if m == k {
        grad_h[at] = grad_h_ti;
    }
}
