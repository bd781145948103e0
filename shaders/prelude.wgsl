// prelude: the helpers every kernel shares, written once and joined before each kernel's
// source when it is loaded (src/gpu/kernels.rs, `with_prelude`); WGSL has no #include.
//   ACT_IDENTITY, ACT_TANH, ACT_RELU   the activation codes (Activation::code on the Rust side)
//   phi(act, a)                        h = φ(a)
//   dphi_from_h(act, h)                φ′(a) from h = φ(a): 1, 1 − h², [h > 0]
//   flat_index(gid, nwg)               an invocation's index in a 2-D grid of 64-wide workgroups
//   flat_workgroup(wid, nwg)           a workgroup's index in a 2-D grid
//   scratch, reduce(lid, op, n)        the workgroup tree reduction (sum or max) over n ≤ 256
// Bindings: none (each kernel declares its own).

const ACT_IDENTITY: u32 = 0u;
const ACT_TANH: u32 = 1u;
const ACT_RELU: u32 = 2u;

// h = φ(a). relu by select, not max: NaN stays NaN, so an overflow still reaches the checks.
fn phi(act: u32, a: f32) -> f32 {
    if act == ACT_TANH {
        return tanh(a);
    } else if act == ACT_RELU {
        return select(a, 0.0, a < 0.0);
    }
    return a;
}

// φ′(a) from h = φ(a): tanh 1 − h², relu [h > 0] (h > 0 exactly when a > 0), identity 1.
fn dphi_from_h(act: u32, h: f32) -> f32 {
    if act == ACT_TANH {
        return 1.0 - h * h;
    } else if act == ACT_RELU {
        return select(0.0, 1.0, h > 0.0);
    }
    return 1.0;
}

// Row-major index of an invocation when the dispatch is a 2-D grid of @workgroup_size(64)
// groups (the host spreads large dispatches over y: src/gpu/mod.rs, `spread`).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

var<workgroup> scratch: array<f32, 256>;

// Tree reduction of scratch[0..n] (n a power of two ≤ 256, the workgroup's size); op 0 = sum,
// 1 = max. The order never changes, so neither does the result; every invocation gets it.
fn reduce(lid: u32, op: u32, n: u32) -> f32 {
    for (var stride = n / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            if op == 0u {
                scratch[lid] += scratch[lid + stride];
            } else {
                scratch[lid] = max(scratch[lid], scratch[lid + stride]);
            }
        }
    }
    workgroupBarrier();
    let r = scratch[0];
    workgroupBarrier();
    return r;
}
