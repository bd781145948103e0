// clip_scale: gradient clipping to a global norm θ (d2l.ai's grad_clipping)
//   g ← min(1, θ/‖g‖)·g,   ‖g‖ = sqrt(Σ_k ‖∂L/∂w_k‖²) over every parameter gradient
// run once per parameter gradient; each run reads the same per-tensor norms (from row_norms)
// and computes the same factor, so all tensors are scaled alike. A non-finite ‖g‖ leaves g as
// it is (the report names the non-finite tensors instead).
// One invocation per element.
// Bindings: 0 params (uniform, dynamic offset), 1 norms [count], 2 g [n].

struct Params {
    n: u32,
    count: u32,   // how many norms make up ‖g‖
    theta: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> norms: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.n {
        return;
    }
    // Scaled by the largest norm so that the sum of squares cannot overflow.
    var big = 0.0;
    for (var k = 0u; k < p.count; k++) {
        big = max(big, norms[k]);
    }
    var sum = 0.0;
    for (var k = 0u; k < p.count; k++) {
        let r = norms[k] / big;
        sum += r * r;
    }
    let total = big * sqrt(sum);
    // Finite and positive, tested on the bits: compilers may assume floats are finite.
    let finite = (bitcast<u32>(total) & 0x7f800000u) != 0x7f800000u;
    if finite && total > p.theta {
        g[idx] = g[idx] * (p.theta / total);
    }
}
