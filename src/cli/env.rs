//! The environment variables the command reads, in one place, each checked like a flag: an
//! invalid value is an error (exit 2), never ignored. The library reads none of them; their
//! values go into its configs.
//!
//! - `WGPU_BACKEND` (backend names, comma-separated; with `--backend auto`) and
//!   `WGPU_ADAPTER_NAME` (without `--adapter`): the adapter request.
//! - `BPTT_MAX_MEMORY` (bytes, or with a K, M, G or T suffix): the memory a run may plan for.
//! - `BPTT_RECURRENT_LAYOUT` (`ROWSxCHUNKS`, a trailing `r` for row walks): recurrent_step's
//!   workgroup layout, for tuning on a new GPU.
//! - `BPTT_PLOT_FONT` (a .ttf/.otf file): the font of the plots' text, checked when a figure
//!   with text is asked for.

use std::path::PathBuf;

use bptt::error::{Error, Result, quote};
use bptt::gpu::kernels::RecurrentLayout;

pub const MAX_MEMORY: &str = "BPTT_MAX_MEMORY";
pub const RECURRENT_LAYOUT: &str = "BPTT_RECURRENT_LAYOUT";
pub const PLOT_FONT: &str = "BPTT_PLOT_FONT";

/// The environment, read once.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub wgpu_backend: Option<String>,
    pub wgpu_adapter_name: Option<String>,
    pub max_memory: Option<u64>,
    pub recurrent_layout: Option<RecurrentLayout>,
    pub plot_font: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

impl Env {
    /// Reads and checks every variable; the first invalid one is the error.
    pub fn read() -> Result<Self> {
        let max_memory = match var(MAX_MEMORY) {
            None => None,
            Some(v) => Some(bptt::memory::parse_bytes(&v).ok_or_else(|| {
                Error::Invalid(format!("{MAX_MEMORY}={} is not a number of bytes (e.g. 8000000000 or 8G)", quote(&v)))
            })?),
        };
        let recurrent_layout = match var(RECURRENT_LAYOUT) {
            None => None,
            Some(v) => Some(RecurrentLayout::parse(&v).ok_or_else(|| {
                Error::Invalid(format!(
                    "{RECURRENT_LAYOUT}={} is not a layout: expected ROWSxCHUNKS with ROWS, CHUNKS ≥ 1 and \
                     ROWS·CHUNKS ≤ 256, and a trailing r for row walks (e.g. 32x8, 64x1r), or unset it",
                    quote(&v)
                ))
            })?),
        };
        Ok(Env {
            wgpu_backend: var("WGPU_BACKEND"),
            wgpu_adapter_name: var("WGPU_ADAPTER_NAME"),
            max_memory,
            recurrent_layout,
            plot_font: std::env::var_os(PLOT_FONT).map(PathBuf::from),
        })
    }

    /// Before a figure with text is drawn: the font `BPTT_PLOT_FONT` names (an error naming
    /// the variable if it is no usable font), else a system font.
    pub fn check_font(&self, figure: &std::path::Path) -> Result<()> {
        match &self.plot_font {
            Some(font) => bptt::plot::use_font(font).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("{PLOT_FONT}={m}, or unset it")),
                other => other,
            }),
            None => bptt::plot::check_font(figure),
        }
    }
}
