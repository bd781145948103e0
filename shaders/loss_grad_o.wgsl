// loss_grad_o: each row's loss term and ∂L/∂o, for all T·B rows at once
//   mse:  ℓ = ½‖o − y‖²,               ∂L/∂o = w·(o − y)
//   xent: ℓ = −log softmax(o)[label],  ∂L/∂o = w·(softmax(o) − onehot(label))
// with w = 1/(T·B) (loss at every step) or 1/B at the last step and 0 elsewhere (loss at last).
// One workgroup per row (t, b); its 64 invocations split the q outputs and reduce in workgroup
// memory in a fixed order, so the result is the same on every run.
// Bindings: 0 params (uniform, dynamic offset), 1 o [T,B,q], 2 y [T,B,q], 3 labels [T,B] (u32),
//           4 grad_o [T,B,q], 5 loss_rows [T·B] (w·ℓ per row; summed by reduce_sum). A window of a
//           checkpointed run scores its own rows into the sequence's loss_rows at an offset.

struct Params {
    rows: u32,      // T·B
    batch: u32,
    output: u32,
    loss_fn: u32,   // 0 mse, 1 xent
    weight: f32,    // w for a scored row
    first_scored_row: u32, // rows before this one are not scored (0 = all rows scored)
    loss_row_offset: u32,  // where this window's rows start in loss_rows (0 for a whole run)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> o: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss_rows: array<f32>;

const WG: u32 = 64u;
// scratch and reduce are the prelude's.

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.output;
    var w = p.weight;
    if row < p.first_scored_row {
        w = 0.0;
    }
    if p.loss_fn == 0u {
        var part = 0.0;
        for (var k = lid; k < p.output; k += WG) {
            let diff = o[base + k] - y[base + k];
            grad_o[base + k] = w * diff;
            part += 0.5 * diff * diff;
        }
        scratch[lid] = part;
        let total = reduce(lid, 0u, WG);
        if lid == 0u {
            loss_rows[p.loss_row_offset + row] = w * total;
        }
    } else {
        // log-sum-exp with the row's maximum subtracted, so large logits cannot overflow.
        var m = -3.4e38;
        for (var k = lid; k < p.output; k += WG) {
            m = max(m, o[base + k]);
        }
        scratch[lid] = m;
        let row_max = reduce(lid, 1u, WG);
        var part = 0.0;
        for (var k = lid; k < p.output; k += WG) {
            part += exp(o[base + k] - row_max);
        }
        scratch[lid] = part;
        let log_z = row_max + log(reduce(lid, 0u, WG));
        let label = labels[row];
        for (var k = lid; k < p.output; k += WG) {
            var g = exp(o[base + k] - log_z);
            if k == label {
                g -= 1.0;
            }
            grad_o[base + k] = w * g;
        }
        if lid == 0u {
            loss_rows[p.loss_row_offset + row] = w * (log_z - o[base + label]);
        }
    }
}
