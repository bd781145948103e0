// empty: no equation at all; 2T of these in one pass time the dispatch-latency floor that any
//   schedule with one dispatch per step each way must pay.
// One workgroup of 64 invocations that write nothing.
// Bindings: 0 params (uniform, dynamic offset; read so the binding is live).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
    _pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {
    if li < p.n {
        return;
    }
}
