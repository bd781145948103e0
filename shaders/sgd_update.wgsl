// sgd_update: one step of SGD with momentum μ (PyTorch's form), element by element
//   v ← μ·v + g,   w ← w − η·v
// run once per parameter tensor, after the backward pass (and clipping) left g in place.
// One invocation per element.
// Bindings: 0 params (uniform, dynamic offset: one slot per tensor), 1 w [n] (updated),
//           2 g [n] (the gradient), 3 vel [n] (the momentum buffer, updated).

struct Params {
    n: u32,
    lr: f32,   // η
    beta1: f32, // μ
    beta2: f32, // unused
    eps: f32,   // unused
    bc1: f32,   // unused
    bc2: f32,   // unused
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> vel: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.n {
        return;
    }
    let v = p.beta1 * vel[i] + g[i];
    vel[i] = v;
    w[i] = w[i] - p.lr * v;
}
