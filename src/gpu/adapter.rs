//! Headless adapter acquisition: no window, no surface. We enumerate every adapter the enabled
//! backends offer, filter by the user's wishes (backend, name, software), and take the best kind
//! (discrete GPU, then integrated, virtual, software). The library reads no environment
//! variable: a caller that honours wgpu's (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`) puts them in the
//! request, saying where each setting came from (`Origin`), so that a search that finds
//! nothing names its cause.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result, quote};

/// Which graphics API to go through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// Every backend this build supports.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

crate::choice!(BackendChoice {
    Auto => "auto": "every backend this build supports (or those of `backend_list` when given)",
    Vulkan => "vulkan": "Vulkan",
    Metal => "metal": "Metal",
    Dx12 => "dx12": "Direct3D 12",
    Gl => "gl": "OpenGL (ES)",
});

/// Where a setting of the request came from, for the messages when nothing matches: a field of
/// the request (named `backend`, `adapter` or `software` in a message), or an environment
/// variable the caller read (the message then names the variable and its value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    Field,
    Env(String),
}

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdapterRequest {
    pub backend: BackendChoice,
    /// With `backend: Auto`, the backends to search by wgpu's names (comma-separated, as
    /// `WGPU_BACKEND` spells them: vulkan, metal, dx12, gl); None searches every one.
    pub backend_list: Option<(String, Origin)>,
    /// Case-insensitive substring of the adapter's name.
    pub name: Option<(String, Origin)>,
    /// Only CPU-type (software/fallback) adapters, such as Mesa's lavapipe.
    pub software: bool,
    /// recurrent_step's workgroup layout (None: chosen by the device type).
    pub recurrent_layout: Option<crate::gpu::kernels::RecurrentLayout>,
    /// Open the device binding at most this many bytes per storage buffer (below the
    /// adapter's own limit; e.g. 128 MiB, WebGPU's default): the device then enforces it, as
    /// a smaller GPU would.
    pub max_binding: Option<u64>,
}

impl AdapterRequest {
    /// Asks for an adapter whose name contains `name`.
    pub fn named(name: impl Into<String>) -> Self {
        AdapterRequest { name: Some((name.into(), Origin::Field)), ..Default::default() }
    }
}

/// What the report prints about the adapter in use.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterSummary {
    fn from_info(info: &wgpu::AdapterInfo) -> Self {
        let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
            (false, false) => format!("{} {}", info.driver, info.driver_info),
            (false, true) => info.driver.clone(),
            (true, false) => info.driver_info.clone(),
            (true, true) => "unknown".into(),
        };
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: device_type_name(info.device_type).into(),
            driver,
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}, driver {})", self.name, self.backend, self.device_type, self.driver)
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "CPU (software)",
        wgpu::DeviceType::Other => "other",
    }
}

/// Preference order: the fastest kind of device first.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// wgpu's names for `WGPU_BACKEND` (`wgpu::Backends::from_comma_list`), which itself drops an
/// unknown name with only a log line: a typo would leave no backend and a misleading "no
/// adapter". We read the variable ourselves and refuse what wgpu would ignore.
fn backend_by_name(name: &str) -> Option<wgpu::Backends> {
    Some(match name.trim().to_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "metal" | "mtl" => wgpu::Backends::METAL,
        "opengl" | "gles" | "gl" => wgpu::Backends::GL,
        "webgpu" => wgpu::Backends::BROWSER_WEBGPU,
        "noop" => wgpu::Backends::NOOP,
        _ => return None,
    })
}

/// The backends to search, and what narrowed them (`backend` metal or `WGPU_BACKEND=metal`;
/// None for every backend), so that a search that finds nothing names its cause.
fn backends(req: &AdapterRequest) -> Result<(wgpu::Backends, Option<String>)> {
    let field = |b: wgpu::Backends, name: &str| Ok((b, Some(format!("`backend` {name}"))));
    match req.backend {
        BackendChoice::Auto => match &req.backend_list {
            None => Ok((wgpu::Backends::all(), None)),
            Some((v, origin)) => {
                let shown = match origin {
                    Origin::Env(var) => format!("{var}={}", quote(v)),
                    Origin::Field => format!("`backend_list` {}", quote(v)),
                };
                let mut set = wgpu::Backends::empty();
                for name in v.split(',') {
                    set |= backend_by_name(name).ok_or_else(|| {
                        let unset = match origin {
                            Origin::Env(var) => format!("unset {var}"),
                            Origin::Field => "leave it out".to_string(),
                        };
                        Error::Invalid(format!(
                            "{shown}: '{}' is not a backend (use vulkan, metal, dx12 or gl, \
                             comma-separated, or {unset} to try every one)",
                            quote(name.trim())
                        ))
                    })?;
                }
                Ok((set, Some(shown)))
            }
        },
        BackendChoice::Vulkan => field(wgpu::Backends::VULKAN, "vulkan"),
        BackendChoice::Metal => field(wgpu::Backends::METAL, "metal"),
        BackendChoice::Dx12 => field(wgpu::Backends::DX12, "dx12"),
        BackendChoice::Gl => field(wgpu::Backends::GL, "gl"),
    }
}

fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    pollster::block_on(wgpu::Instance::new(desc).enumerate_adapters(backends))
}

/// How to get an adapter, for every "none found" message.
pub const HOW_TO_GET_AN_ADAPTER: &str = "install a GPU driver with Vulkan, Metal or DX12 support, \
or on headless Linux Mesa's software adapter: `apt-get install mesa-vulkan-drivers` \
(on Debian 12 preferably from bookworm-backports); `bptt --list-adapters` shows what wgpu sees";

/// Every adapter wgpu can see through the chosen backends. An invalid `WGPU_BACKEND` is an
/// error (exit 2); finding none names what narrowed the search.
pub fn list_adapters(req: &AdapterRequest) -> Result<Vec<AdapterSummary>> {
    let (set, narrowed_by) = backends(req)?;
    let adapters: Vec<AdapterSummary> =
        enumerate(set).iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect();
    if adapters.is_empty() {
        return Err(Error::NoAdapter(none_through(narrowed_by.as_deref())));
    }
    Ok(adapters)
}

/// The message when the backends searched hold no adapter: if `narrowed_by` (a flag or
/// `WGPU_BACKEND`) left some out, it says so and lists what the others offer; only when no
/// backend has one does it say how to install a driver.
fn none_through(narrowed_by: Option<&str>) -> String {
    let Some(cause) = narrowed_by else {
        return format!("no GPU adapter found. To get one, {HOW_TO_GET_AN_ADAPTER}");
    };
    let elsewhere: Vec<String> =
        enumerate(wgpu::Backends::all()).iter().map(|a| AdapterSummary::from_info(&a.get_info()).to_string()).collect();
    if elsewhere.is_empty() {
        format!(
            "no GPU adapter found through {cause}, nor through any other backend. To get one, {HOW_TO_GET_AN_ADAPTER}"
        )
    } else {
        let fix = match cause.split_once('=') {
            Some((var, _)) if !cause.starts_with('`') => format!("set {var} to its backend or unset it"),
            _ => "give `backend` its backend or leave it out".to_string(),
        };
        format!("no GPU adapter through {cause}; the other backends offer: {}. To use one, {fix}", elsewhere.join("; "))
    }
}

/// A device and queue ready for compute, with what we learnt about the adapter.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub device_type: wgpu::DeviceType,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The first error wgpu reported outside an error scope, if any (validation, out of memory).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// recurrent_step's workgroup shape: the request's, or from the device type.
    recurrent: crate::gpu::kernels::RecurrentLayout,
    /// Compiled once per device, on first use, and shared by every object built on it.
    pipelines: std::sync::OnceLock<Arc<crate::gpu::kernels::Pipelines>>,
}

impl GpuContext {
    /// Finds the adapter `req` describes and opens a device on it with the adapter's own limits
    /// (so large shapes fit wherever the hardware allows) and timestamp queries where offered.
    pub fn new(req: &AdapterRequest) -> Result<Self> {
        let (set, narrowed_by) = backends(req)?;
        let adapters = enumerate(set);
        if adapters.is_empty() {
            return Err(Error::NoAdapter(none_through(narrowed_by.as_deref())));
        }
        let seen: Vec<String> = adapters.iter().map(|a| AdapterSummary::from_info(&a.get_info()).to_string()).collect();
        // The name filter, where it came from (the flag wins over the variable), and its fix.
        let name = req.name.as_ref().map(|(n, origin)| match origin {
            Origin::Field => (
                n.to_lowercase(),
                format!("`adapter` {}", quote(n)),
                "give `adapter` a part of one of these names or leave it out".to_string(),
            ),
            Origin::Env(var) => (
                n.to_lowercase(),
                format!("{var}={}", quote(n)),
                format!("set {var} to a part of one of these names or unset it"),
            ),
        });
        let chosen = adapters
            .into_iter()
            .filter(|a| {
                let info = a.get_info();
                (!req.software || info.device_type == wgpu::DeviceType::Cpu)
                    && name.as_ref().is_none_or(|(n, _, _)| info.name.to_lowercase().contains(n))
            })
            .min_by_key(|a| rank(a.get_info().device_type));
        let Some(adapter) = chosen else {
            // Adapters exist and the filters left them all out: name the filters and what they
            // left out, not a driver to install.
            let mut filters = Vec::new();
            let mut fixes = Vec::new();
            if let Some((n, from, fix)) = &name {
                filters.push(format!("{from} (a name containing \"{}\")", quote(n)));
                fixes.push(fix.clone());
            }
            if req.software {
                filters.push("`software` (a CPU-type adapter)".to_string());
                fixes.push("leave out `software`".to_string());
            }
            return Err(Error::NoAdapter(format!(
                "no GPU adapter matches {}; adapters found: {}. To use one, {}",
                filters.join(" with "),
                seen.join("; "),
                fixes.join(", and ")
            )));
        };
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(cap) = req.max_binding {
            limits.max_storage_buffer_binding_size = cap.min(limits.max_storage_buffer_binding_size);
        }
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("bptt"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(format!("could not open a device on {}: {e}", info.name)))?;
        // wgpu panics on errors nobody captures; record them instead, so every failure becomes a
        // one-line error from the call that caused it.
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            // wgpu's description spans several lines ("Validation Error", "Caused by:", ...):
            // keep them all, joined into one line.
            let text = match &e {
                wgpu::Error::Validation { description, .. } | wgpu::Error::Internal { description, .. } => {
                    description.clone()
                }
                wgpu::Error::OutOfMemory { source } => format!("out of GPU memory: {source}"),
            };
            let parts: Vec<&str> =
                text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "Caused by:").collect();
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| parts.join(": "));
        }));
        Ok(GpuContext {
            device,
            queue,
            adapter: AdapterSummary::from_info(&info),
            device_type: info.device_type,
            recurrent: req
                .recurrent_layout
                .unwrap_or(crate::gpu::kernels::RecurrentLayout::for_device_type(info.device_type)),
            limits,
            features,
            uncaptured,
            pipelines: std::sync::OnceLock::new(),
        })
    }

    /// Fails with the first error wgpu reported since the last check.
    pub fn check_errors(&self) -> Result<()> {
        match self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(msg) => Err(Error::Gpu(msg)),
            None => Ok(()),
        }
    }

    /// Every kernel's pipeline on this device, compiled on the first call.
    pub fn pipelines(&self) -> Arc<crate::gpu::kernels::Pipelines> {
        self.pipelines
            .get_or_init(|| Arc::new(crate::gpu::kernels::Pipelines::new(&self.device, self.recurrent_layout())))
            .clone()
    }

    /// recurrent_step's workgroup shape for this device.
    pub fn recurrent_layout(&self) -> crate::gpu::kernels::RecurrentLayout {
        self.recurrent
    }

    /// The same context with another recurrent_step layout (before any pipeline is built), so
    /// tests can run the GPU layout on a software adapter and the other way round.
    pub fn with_recurrent_layout(mut self, layout: crate::gpu::kernels::RecurrentLayout) -> Self {
        assert!(self.pipelines.get().is_none(), "the layout is fixed once pipelines are built");
        self.recurrent = layout;
        self
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check_errors()
    }
}
