//! The WGSL kernels: their sources (one file each in `shaders/`), their bindings, and the
//! 32-byte parameter block each one reads from the uniform arena at a dynamic offset.

/// Bytes bound for every kernel's `Params` struct: up to sixteen 32-bit fields (most kernels
/// declare eight; binding more than a struct needs is allowed).
pub const PARAMS_SIZE: u64 = 64;
pub type ParamBlock = [u32; 16];

/// A parameter block from its leading fields (the rest zero).
pub fn params(fields: &[u32]) -> ParamBlock {
    let mut p = [0u32; 16];
    p[..fields.len()].copy_from_slice(fields);
    p
}

/// Every kernel in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    ForwardStep,
    OutputStep,
    LossGradO,
    ReduceSum,
    BackwardStep,
    AccumulateOuter,
    AccumulateColsum,
    RowNorms,
    Matmul,
    RecurrentStep,
    Transpose,
    Empty,
    TruncatedStep,
    ClipScale,
}

/// The helpers every kernel shares (φ/φ′ and the activation codes, the index helpers, the
/// workgroup reduction): `shaders/prelude.wgsl`, joined before each kernel's source.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// A kernel's WGSL with the prelude before it (WGSL has no #include).
pub fn with_prelude(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

impl Kernel {
    pub const ALL: [Kernel; 14] = [
        Kernel::ForwardStep,
        Kernel::OutputStep,
        Kernel::LossGradO,
        Kernel::ReduceSum,
        Kernel::BackwardStep,
        Kernel::AccumulateOuter,
        Kernel::AccumulateColsum,
        Kernel::RowNorms,
        Kernel::Matmul,
        Kernel::RecurrentStep,
        Kernel::Transpose,
        Kernel::Empty,
        Kernel::TruncatedStep,
        Kernel::ClipScale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::ForwardStep => "forward_step",
            Kernel::OutputStep => "output_step",
            Kernel::LossGradO => "loss_grad_o",
            Kernel::ReduceSum => "reduce_sum",
            Kernel::BackwardStep => "backward_step",
            Kernel::AccumulateOuter => "accumulate_outer",
            Kernel::AccumulateColsum => "accumulate_colsum",
            Kernel::RowNorms => "row_norms",
            Kernel::Matmul => "matmul",
            Kernel::RecurrentStep => "recurrent_step",
            Kernel::Transpose => "transpose",
            Kernel::Empty => "empty",
            Kernel::TruncatedStep => "truncated_step",
            Kernel::ClipScale => "clip_scale",
        }
    }

    /// The kernel's own file, without the prelude.
    pub fn body(self) -> &'static str {
        match self {
            Kernel::ForwardStep => include_str!("../../shaders/forward_step.wgsl"),
            Kernel::OutputStep => include_str!("../../shaders/output_step.wgsl"),
            Kernel::LossGradO => include_str!("../../shaders/loss_grad_o.wgsl"),
            Kernel::ReduceSum => include_str!("../../shaders/reduce_sum.wgsl"),
            Kernel::BackwardStep => include_str!("../../shaders/backward_step.wgsl"),
            Kernel::AccumulateOuter => include_str!("../../shaders/accumulate_outer.wgsl"),
            Kernel::AccumulateColsum => include_str!("../../shaders/accumulate_colsum.wgsl"),
            Kernel::RowNorms => include_str!("../../shaders/row_norms.wgsl"),
            Kernel::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::RecurrentStep => include_str!("../../shaders/recurrent_step.wgsl"),
            Kernel::Transpose => include_str!("../../shaders/transpose.wgsl"),
            Kernel::Empty => include_str!("../../shaders/empty.wgsl"),
            Kernel::TruncatedStep => include_str!("../../shaders/truncated_step.wgsl"),
            Kernel::ClipScale => include_str!("../../shaders/clip_scale.wgsl"),
        }
    }

    /// The source the device compiles: the prelude joined with the kernel's file.
    pub fn source(self) -> String {
        with_prelude(self.body())
    }

    /// Storage bindings 1.. in order; `true` where the shader only reads.
    pub fn storage_read_only(self) -> &'static [bool] {
        match self {
            Kernel::ForwardStep => &[true, true, true, true, false],
            Kernel::OutputStep => &[true, true, true, false],
            Kernel::LossGradO => &[true, true, true, false, false],
            Kernel::ReduceSum => &[true, false],
            Kernel::BackwardStep => &[true, true, true, true, false, false],
            Kernel::AccumulateOuter => &[true, true, false],
            Kernel::AccumulateColsum => &[true, false],
            Kernel::RowNorms => &[true, false],
            Kernel::Matmul => &[true, true, false, true],
            Kernel::RecurrentStep => &[true, true, false, false, true],
            Kernel::Transpose => &[true, false],
            Kernel::Empty => &[],
            Kernel::TruncatedStep => &[true, true, false, false, true],
            Kernel::ClipScale => &[true, false],
        }
    }

    /// Invocations per workgroup, as declared by `@workgroup_size` in the shader (matmul's
    /// 16×16 covers a 64×64 tile; recurrent_step's 64 cover 4 rows).
    pub fn workgroup_size(self) -> u32 {
        match self {
            Kernel::ReduceSum | Kernel::RowNorms | Kernel::Matmul => 256,
            _ => 64,
        }
    }
}

/// recurrent_step's workgroup: `rows` rows (b, i), each summed by `chunks` invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecurrentLayout {
    pub rows: u32,
    pub chunks: u32,
    /// Each invocation walks its own row of W (bound in the other orientation) instead of
    /// neighbouring invocations walking neighbouring columns.
    pub walk_rows: bool,
}

impl RecurrentLayout {
    /// On a GPU, 8 slices per column give each step 8× the parallel work (32 columns keep a
    /// warp's loads in one 128-byte line); on a software adapter barriers cost more than they
    /// buy, and each invocation streaming its own contiguous row is fastest, so one invocation
    /// sums a whole row. `AdapterRequest::recurrent_layout` overrides the choice, for tuning on
    /// a new GPU.
    pub fn for_device_type(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::Cpu => RecurrentLayout { rows: 64, chunks: 1, walk_rows: true },
            _ => RecurrentLayout { rows: 32, chunks: 8, walk_rows: false },
        }
    }
}

impl RecurrentLayout {
    /// "ROWSxCHUNKS", with a trailing "r" for row walks (e.g. "32x8", "64x1r").
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        let (v, walk_rows) = match v.strip_suffix('r') {
            Some(rest) => (rest, true),
            None => (v, false),
        };
        let (r, c) = v.split_once('x')?;
        let (rows, chunks) = (r.trim().parse::<u32>().ok()?, c.trim().parse::<u32>().ok()?);
        // checked_mul: 65536x65536 wraps a u32 product to 0, which would pass "≤ 256".
        let size = rows.checked_mul(chunks)?;
        (rows >= 1 && chunks >= 1 && size <= 256).then_some(RecurrentLayout { rows, chunks, walk_rows })
    }
}

/// Compiled pipelines and their bind group layouts, one of each per kernel. They do not depend
/// on the shape, so one set serves every problem on a device.
pub struct Pipelines {
    entries: Vec<(Kernel, wgpu::BindGroupLayout, wgpu::ComputePipeline)>,
    pub recurrent: RecurrentLayout,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device, recurrent: RecurrentLayout) -> Self {
        let constants = [
            ("ROWS", recurrent.rows as f64),
            ("CHUNKS", recurrent.chunks as f64),
            ("WALK_ROWS", if recurrent.walk_rows { 1.0 } else { 0.0 }),
        ];
        let entries = Kernel::ALL
            .iter()
            .map(|&k| {
                let mut layout_entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(PARAMS_SIZE),
                    },
                    count: None,
                }];
                for (n, &read_only) in k.storage_read_only().iter().enumerate() {
                    layout_entries.push(wgpu::BindGroupLayoutEntry {
                        binding: n as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(k.name()),
                    entries: &layout_entries,
                });
                let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(k.name()),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name()),
                    source: wgpu::ShaderSource::Wgsl(k.source().into()),
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.name()),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: if k == Kernel::RecurrentStep { &constants } else { &[] },
                        ..Default::default()
                    },
                    cache: None,
                });
                (k, bgl, pipeline)
            })
            .collect();
        Pipelines { entries, recurrent }
    }

    fn entry(&self, k: Kernel) -> &(Kernel, wgpu::BindGroupLayout, wgpu::ComputePipeline) {
        self.entries.iter().find(|e| e.0 == k).expect("every kernel has a pipeline")
    }

    pub fn layout(&self, k: Kernel) -> &wgpu::BindGroupLayout {
        &self.entry(k).1
    }

    pub fn pipeline(&self, k: Kernel) -> &wgpu::ComputePipeline {
        &self.entry(k).2
    }
}

#[cfg(test)]
mod tests {
    use super::RecurrentLayout;

    #[test]
    fn layouts_parse_and_bad_ones_are_refused() {
        let l = |rows, chunks, walk_rows| Some(RecurrentLayout { rows, chunks, walk_rows });
        assert_eq!(RecurrentLayout::parse("32x8"), l(32, 8, false));
        assert_eq!(RecurrentLayout::parse(" 64x1r "), l(64, 1, true));
        assert_eq!(RecurrentLayout::parse("16x16"), l(16, 16, false));
        // 65536·65536 wraps a u32 to 0: before, that passed the ≤ 256 check.
        for bad in ["65536x65536", "65536x65536r", "garbage", "32", "0x8", "8x0", "257x1", "32x9", "x8", "-1x8", ""] {
            assert_eq!(RecurrentLayout::parse(bad), None, "{bad:?}");
        }
    }
}
