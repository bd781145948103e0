//! The tiled matrix product on its own: one dispatch of `shaders/matmul.wgsl` on fresh buffers,
//! so tests (against a CPU product on awkward sizes) and benches can exercise the kernel the
//! fused schedule reuses for every time-parallel product.

use wgpu::util::DeviceExt;

use super::kernels::{Kernel, PARAMS_SIZE, params};
use super::{GpuContext, read_buffer};
use crate::error::Result;

/// How a matrix operand is read: element (r, c) is at `offset + r·row_stride + c·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub offset: u32,
    pub row_stride: u32,
    pub col_stride: u32,
}

/// `C [m, n] = A [m, k] · B [k, n] (+ bias [n])` on the GPU.
pub fn matmul(
    ctx: &GpuContext,
    m: u32,
    n: u32,
    k: u32,
    a: Operand,
    b: Operand,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let device = &ctx.device;
    let storage = |data: &[f32], extra: wgpu::BufferUsages| {
        let contents: &[u8] = if data.is_empty() { &[0; 4] } else { bytemuck::cast_slice(data) };
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage: wgpu::BufferUsages::STORAGE | extra,
        })
    };
    let a_buf = storage(a.data, wgpu::BufferUsages::empty());
    let b_buf = storage(b.data, wgpu::BufferUsages::empty());
    let c_buf = storage(&vec![f32::NAN; (m * n) as usize], wgpu::BufferUsages::COPY_SRC);
    let bias_buf = storage(bias.unwrap_or(&[]), wgpu::BufferUsages::empty());
    let fields = [
        m,
        n,
        k,
        a.offset,
        a.row_stride,
        a.col_stride,
        b.offset,
        b.row_stride,
        b.col_stride,
        0,
        0,
        bias.is_some() as u32,
    ];
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("matmul params"),
        contents: bytemuck::cast_slice(&params(&fields)),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let pipelines = ctx.pipelines();
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("matmul"),
        layout: pipelines.layout(Kernel::Matmul),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAMS_SIZE),
                }),
            },
            wgpu::BindGroupEntry { binding: 1, resource: a_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: b_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: c_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: bias_buf.as_entire_binding() },
        ],
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("matmul readback"),
        size: c_buf.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipelines.pipeline(Kernel::Matmul));
        pass.set_bind_group(0, &bind_group, &[0]);
        let (gx, gy) = super::spread(n.div_ceil(64) * m.div_ceil(64), ctx.limits.max_compute_workgroups_per_dimension);
        pass.dispatch_workgroups(gx, gy, 1);
    }
    encoder.copy_buffer_to_buffer(&c_buf, 0, &readback, 0, c_buf.size());
    ctx.queue.submit([encoder.finish()]);
    let bytes = read_buffer(ctx, &readback, c_buf.size())?;
    Ok(bytemuck::cast_slice::<u8, f32>(&bytes)[..(m * n) as usize].to_vec())
}
