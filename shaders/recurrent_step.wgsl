// recurrent_step: the only sequential work of the fused schedule, one step per dispatch
//   forward  (mode 0): h_t = φ(xproj_t + h_{t-1}·w_hhᵀ)            (xproj_t = x_t·w_hxᵀ + b_h)
//   backward (mode 1): ∂L/∂h_t = gq_t + ∂L/∂a_{t+1}·w_hh,  ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
//                                                               (gq_t = ∂L/∂o_t·w_qh)
//   h0       (mode 2): ∂L/∂h0 = ∂L/∂a_1·w_hh
// All three are out[b,i] = add[b,i] + Σ_j v[b,j]·W[i,j] with W = w_hh forward and W = w_hhᵀ
// (a copy made once per run) backward, so every row of W is contiguous in memory.
// A row (b, i) is shared by 16 invocations that stride over j (neighbours read neighbouring
// addresses) and reduce in workgroup memory in a fixed order; a workgroup covers 4 rows.
// Bindings: 0 params (uniform, dynamic offset), 1 w [h,h], 2 add [T,B,h],
//           3 state [slots,B,h] (reads slot v_slot, writes slot out_slot: h forward, ∂L/∂a
//           backward), 4 grad_h [T+1,B,h] (written backward and in mode 2),
//           5 h [T+1,B,h] (read backward for φ'; unused forward).

struct Params {
    mode: u32,
    batch: u32,
    hidden: u32,
    activation: u32, // 0 identity, 1 tanh
    v_slot: u32,     // slot of `state` holding v (h_{t-1} or ∂L/∂a_{t+1})
    out_slot: u32,   // slot of `state` written (h_t or ∂L/∂a_t)
    add_slot: u32,   // slot of `add` (xproj_t or gq_t)
    t: u32,          // the math's step (slot of grad_h and h backward)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
    _pad6: u32,
    _pad7: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> add: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_h: array<f32>;
@group(0) @binding(5) var<storage, read> h: array<f32>;

const LANES: u32 = 16u;
const ROWS: u32 = 4u;
var<workgroup> scratch: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let lane = li % LANES;
    let local_row = li / LANES;
    let row = (wid.x + wid.y * nwg.x) * ROWS + local_row; // row = b·h + i
    let rows = p.batch * p.hidden;
    let live = row < rows;
    var part = 0.0;
    var b = 0u;
    var i = 0u;
    if live {
        b = row / p.hidden;
        i = row % p.hidden;
        let v_base = (p.v_slot * p.batch + b) * p.hidden;
        let w_base = i * p.hidden;
        for (var j = lane; j < p.hidden; j += LANES) {
            part += state[v_base + j] * w[w_base + j];
        }
    }
    // Fixed-order tree over the 16 lanes of each row (barriers stay in uniform control flow).
    scratch[li] = part;
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lane < stride {
            scratch[li] += scratch[li + stride];
        }
    }
    workgroupBarrier();
    if !live || lane != 0u {
        return;
    }
    var acc = scratch[li];
    let at = b * p.hidden + i;
    if p.mode != 2u {
        acc += add[p.add_slot * rows + at];
    }
    if p.mode == 0u {
        if p.activation == 1u {
            acc = tanh(acc);
        }
        state[p.out_slot * rows + at] = acc;
    } else {
        grad_h[p.t * rows + at] = acc;
        if p.mode == 1u {
            var dphi = 1.0;
            if p.activation == 1u {
                let h_t = h[p.t * rows + at];
                dphi = 1.0 - h_t * h_t;
            }
            state[p.out_slot * rows + at] = acc * dphi;
        }
    }
}
