//! The library in a few lines: load a problem, run it where you like, save the result.

use crate::error::Result;
use crate::gpu::{AdapterRequest, GpuBptt, GpuContext, Schedule};
use crate::model::{BpttResult, Problem};

/// Where a forward + backward pass runs.
#[derive(Clone, Debug)]
pub enum Device {
    /// A wgpu adapter, with the dispatch schedule to use.
    Gpu { adapter: AdapterRequest, schedule: Schedule },
    /// The fast f32 CPU path.
    Cpu,
    /// The f64 CPU reference.
    CpuRef,
}

impl Device {
    /// The best adapter wgpu finds, with the default (fused) schedule.
    pub fn gpu() -> Self {
        Device::Gpu { adapter: AdapterRequest::default(), schedule: Schedule::default() }
    }
}

/// One forward + backward pass of `p` on `device`, with the forward states kept.
///
/// On the GPU this opens a device and builds pipelines on every call; to run many problems of
/// one shape, keep a [`GpuContext`] and a [`GpuBptt`] and call [`GpuBptt::run`] instead.
pub fn compute(p: &Problem, device: &Device) -> Result<BpttResult> {
    match device {
        Device::Gpu { adapter, schedule } => {
            let ctx = GpuContext::new(adapter)?;
            let mut gpu = GpuBptt::new(&ctx, p.shape, *schedule)?;
            Ok(gpu.run(&ctx, p, true)?.0)
        }
        Device::Cpu => Ok(crate::cpu::fast::bptt(p)),
        Device::CpuRef => Ok(crate::cpu::reference::bptt(p)),
    }
}
