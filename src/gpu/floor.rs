//! The dispatch-latency floor: 2T empty dispatches, in compute passes of at most
//! `MAX_DISPATCHES_PER_PASS` as the schedules record them. A schedule with one dispatch per
//! step each way cannot beat this at small batch, however fast its kernels.

use std::time::Instant;

use wgpu::util::DeviceExt;

use super::kernels::{Kernel, PARAMS_SIZE, params};
use super::{GpuContext, MAX_DISPATCHES_PER_PASS, read_buffer};
use crate::error::Result;

/// Milliseconds for `count` empty dispatches (in passes of at most `MAX_DISPATCHES_PER_PASS`): the median of `repeat` runs after a
/// warm-up, from timestamp queries where the adapter has them, else the host clock.
pub fn dispatch_floor_ms(ctx: &GpuContext, count: u32, repeat: usize) -> Result<f64> {
    let device = &ctx.device;
    let pipelines = ctx.pipelines();
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("empty params"),
        contents: bytemuck::cast_slice(&params(&[64])),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("empty"),
        layout: pipelines.layout(Kernel::Empty),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniform,
                offset: 0,
                size: wgpu::BufferSize::new(PARAMS_SIZE),
            }),
        }],
    });
    let stamps = ctx.has_timestamps().then(|| {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("floor"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("floor resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("floor readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (set, resolve, readback)
    });
    let mut times = Vec::new();
    for run in 0..=repeat {
        let mut encoder = device.create_command_encoder(&Default::default());
        let passes = (count as usize).div_ceil(MAX_DISPATCHES_PER_PASS).max(1);
        for n in 0..passes {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("empty dispatches"),
                // The first pass's start and the last one's end (wgpu refuses a stamp with neither).
                timestamp_writes: stamps.as_ref().filter(|_| n == 0 || n + 1 == passes).map(|(set, _, _)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: (n == 0).then_some(0),
                        end_of_pass_write_index: (n + 1 == passes).then_some(1),
                    }
                }),
            });
            pass.set_pipeline(pipelines.pipeline(Kernel::Empty));
            let in_this_pass = (count as usize - n * MAX_DISPATCHES_PER_PASS).min(MAX_DISPATCHES_PER_PASS);
            for _ in 0..in_this_pass {
                pass.set_bind_group(0, &bind_group, &[0]);
                pass.dispatch_workgroups(1, 1, 1);
            }
        }
        if let Some((set, resolve, readback)) = &stamps {
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, readback, 0, 16);
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        let host_ms = start.elapsed().as_secs_f64() * 1e3;
        let ms = match &stamps {
            Some((_, _, readback)) => {
                let bytes = read_buffer(ctx, readback, 16)?;
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                ticks[1].saturating_sub(ticks[0]) as f64 * ctx.queue.get_timestamp_period() as f64 / 1e6
            }
            None => host_ms,
        };
        if run > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
