// recurrent_step: the only sequential work of the fused schedule, one step per dispatch
//   forward  (mode 0): h_t = φ(xproj_t + h_{t-1}·w_hhᵀ)            (xproj_t = x_t·w_hxᵀ + b_h)
//   backward (mode 1): ∂L/∂h_t = gq_t + c_t·∂L/∂a_{t+1}·w_hh,  ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
//                                                               (gq_t = ∂L/∂o_t·w_qh)
//   h0       (mode 2): ∂L/∂h0 = c_0·∂L/∂a_1·w_hh
// (c_t = 1 is full BPTT; 0 cuts the gradient at a segment boundary; randomised truncation
// uses 0 or 1/(1−p)).
// All three are out[b,i] = add[b,i] + Σ_j v[b,j]·W[j,i], with W = w_hhᵀ forward (a copy made
// once per run) and W = w_hh backward: for each j, neighbouring invocations (neighbouring i)
// read neighbouring addresses of row j of W — coalesced on a GPU. With WALK_ROWS (software
// adapters) the host binds the other orientation and each invocation instead walks its own
// contiguous row, out[b,i] = add + Σ_j v[b,j]·W[i,j], which a CPU streams from cache best.
// The j range is split into CHUNKS slices (the workgroup's y) whose partial sums are added in
// workgroup memory in a fixed order: more parallel work per step on a GPU; CHUNKS = 1 on a
// software adapter, where barriers are expensive. Each invocation serves up to 4 batch
// entries of one i, so every W[j,i] it loads is used 4 times when B > 1.
// Bindings: 0 params (uniform, dynamic offset), 1 w [h,h], 2 add [T,B,h],
//           3 state [slots,B,h] (reads slot v_slot, writes slot out_slot: h forward, ∂L/∂a
//           backward), 4 grad_h [T+1,B,h] (written backward and in mode 2),
//           5 h [T+1,B,h] (read backward for φ'; unused forward).

struct Params {
    mode: u32,
    batch: u32,
    hidden: u32,
    activation: u32, // ACT_IDENTITY, ACT_TANH or ACT_RELU (the prelude)
    v_slot: u32,     // slot of `state` holding v (h_{t-1} or ∂L/∂a_{t+1})
    out_slot: u32,   // slot of `state` written (h_t or ∂L/∂a_t)
    add_slot: u32,   // slot of `add` (xproj_t or gq_t)
    t: u32,          // the math's step (slot of grad_h and h backward)
    carry: f32,      // c_t (backward and mode 2)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> add: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_h: array<f32>;
@group(0) @binding(5) var<storage, read> h: array<f32>;

// Columns i per workgroup, and slices of j per column; ROWS·CHUNKS ≤ 256.
override ROWS: u32 = 32u;
override CHUNKS: u32 = 8u;
override WALK_ROWS: bool = false;
const BB: u32 = 4u; // batch entries per invocation
var<workgroup> partial: array<f32, 1024>; // [CHUNKS][ROWS][BB]

@compute @workgroup_size(ROWS, CHUNKS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    // item = b_block·h + i, with b_block covering batch entries 4·b_block .. 4·b_block + 3
    let item = flat_workgroup(wid, nwg) * ROWS + lid.x;
    let blocks = (p.batch + BB - 1u) / BB;
    let live = item < blocks * p.hidden;
    let i = item % p.hidden;
    let b0 = (item / p.hidden) * BB;
    let nb = min(BB, p.batch - min(b0, p.batch));
    // Four batch rows at once in a vec4; rows past the batch re-read row b0 and are dropped.
    var part = vec4<f32>(0.0);
    if live {
        let slice = (p.hidden + CHUNKS - 1u) / CHUNKS;
        let j_end = min(p.hidden, (lid.y + 1u) * slice);
        let v0 = (p.v_slot * p.batch + b0) * p.hidden;
        let v1 = v0 + select(0u, p.hidden, nb > 1u);
        let v2 = v0 + select(0u, 2u * p.hidden, nb > 2u);
        let v3 = v0 + select(0u, 3u * p.hidden, nb > 3u);
        if nb == 1u {
            // One batch entry (B = 1, or the last block): no redundant loads.
            var acc = 0.0;
            if WALK_ROWS {
                for (var j = lid.y * slice; j < j_end; j++) {
                    acc += state[v0 + j] * w[i * p.hidden + j];
                }
            } else {
                for (var j = lid.y * slice; j < j_end; j++) {
                    acc += state[v0 + j] * w[j * p.hidden + i];
                }
            }
            part.x = acc;
        } else if WALK_ROWS {
            for (var j = lid.y * slice; j < j_end; j++) {
                let v = vec4<f32>(state[v0 + j], state[v1 + j], state[v2 + j], state[v3 + j]);
                part += v * w[i * p.hidden + j];
            }
        } else {
            for (var j = lid.y * slice; j < j_end; j++) {
                let v = vec4<f32>(state[v0 + j], state[v1 + j], state[v2 + j], state[v3 + j]);
                part += v * w[j * p.hidden + i];
            }
        }
    }
    for (var bb = 0u; bb < BB; bb++) {
        partial[(lid.y * ROWS + lid.x) * BB + bb] = part[bb];
    }
    workgroupBarrier();
    if !live || lid.y != 0u {
        return;
    }
    let rows = p.batch * p.hidden;
    for (var bb = 0u; bb < nb; bb++) {
        var acc = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            acc += partial[(c * ROWS + lid.x) * BB + bb];
        }
        if p.mode != 0u {
            acc *= p.carry;
        }
        let at = (b0 + bb) * p.hidden + i;
        if p.mode != 2u {
            acc += add[p.add_slot * rows + at];
        }
        if p.mode == 0u {
            state[p.out_slot * rows + at] = phi(p.activation, acc);
        } else {
            grad_h[p.t * rows + at] = acc;
            if p.mode == 1u {
                state[p.out_slot * rows + at] = acc * dphi_from_h(p.activation, h[p.t * rows + at]);
            }
        }
    }
}
