// transpose: out = inᵀ, i.e. out[j, i] = in[i, j] for a row-major [rows, cols] input
//   used once per run for w_hhᵀ, so the backward recurrence reads rows of w_hhᵀ contiguously
// One invocation per element.
// Bindings: 0 params (uniform, dynamic offset), 1 src [rows, cols], 2 dst [cols, rows].

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= p.rows * p.cols {
        return;
    }
    let i = idx / p.cols;
    let j = idx % p.cols;
    dst[j * p.rows + i] = src[idx];
}
