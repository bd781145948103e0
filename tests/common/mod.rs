//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod svg;

use std::process::Command;

use bptt::gpu::{AdapterRequest, GpuContext};
use bptt::model::{BpttResult, rel_err};

/// The environment variables the binary reads (adapter, recurrent layout, plot font, memory cap).
pub const BPTT_ENV: [&str; 5] =
    ["WGPU_BACKEND", "WGPU_ADAPTER_NAME", "BPTT_RECURRENT_LAYOUT", "BPTT_PLOT_FONT", "BPTT_MAX_MEMORY"];

/// The binary, with the test process's environment.
pub fn bptt_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bptt"))
}

/// The binary with every variable of `BPTT_ENV` removed, for tests about those variables.
pub fn bptt_command_clean_env() -> Command {
    let mut cmd = bptt_command();
    for var in BPTT_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to the end: (exit code, or −1 when a signal ended it; stdout; stderr).
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run bptt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `bptt ARGS`: (exit code, stdout, stderr).
pub fn bptt(args: &[&str]) -> (i32, String, String) {
    output(bptt_command().args(args))
}

/// The GPU tests' adapter. Without one they fail, saying how to get one: never a silent skip.
pub fn gpu() -> GpuContext {
    GpuContext::new(&AdapterRequest::default()).unwrap_or_else(|e| {
        panic!(
            "the GPU tests need a wgpu adapter and found none: {e}\n\
             On headless Linux install Mesa's software Vulkan driver (lavapipe): \
             `apt-get install mesa-vulkan-drivers` (on Debian 12 preferably from bookworm-backports; see .ci/run)."
        )
    })
}

/// Both recurrent_step layouts, whatever the adapter: columns split 8 ways (the GPU default,
/// with its workgroup reduction) and row walks (the software default).
pub fn gpu_with_each_layout() -> Vec<GpuContext> {
    use bptt::gpu::kernels::RecurrentLayout;
    ["32x8", "64x1r"].iter().map(|l| gpu().with_recurrent_layout(RecurrentLayout::parse(l).unwrap())).collect()
}

/// Asserts every result tensor of `got` is within `tol` (relative) of `want`; returns the worst.
pub fn assert_close(what: &str, got: &BpttResult, want: &BpttResult, tol: f64) -> f64 {
    let mut worst: f64 = 0.0;
    let (a, b) = (got.tensors(), want.tensors());
    assert_eq!(a.len(), b.len(), "{what}: different tensor sets");
    for ((name, x), (name2, y)) in a.into_iter().zip(b) {
        assert_eq!(name, name2);
        assert!(x.iter().all(|v| v.is_finite()), "{what}: {name} has non-finite entries");
        let e = rel_err(x, y);
        assert!(e <= tol, "{what}: {name} relative error {e:.3e} > {tol:e}");
        worst = worst.max(e);
    }
    worst
}
