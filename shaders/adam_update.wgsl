// adam_update: one step of Adam (Kingma & Ba 2015), element by element
//   m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²,
//   w ← w − η·(m / c₁) / (√(v / c₂) + ε),   c_k = 1 − β_kⁿ at update n (computed by the host)
// run once per parameter tensor, after the backward pass (and clipping) left g in place.
// One invocation per element.
// Bindings: 0 params (uniform, dynamic offset: one slot per tensor), 1 w [n] (updated),
//           2 g [n] (the gradient), 3 m [n], 4 v [n] (the moment estimates, updated).

struct Params {
    n: u32,
    lr: f32,    // η
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,   // c₁
    bc2: f32,   // c₂
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= p.n {
        return;
    }
    let gi = g[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] - p.lr * (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);
}
