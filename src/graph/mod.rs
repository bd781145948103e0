//! The unrolled computation graph of a run, as in the textbook's figure: time across (one
//! column per step), rows for the inputs x_t, the hidden states h_t, the outputs o_t, the loss
//! terms ℓ_t with their targets y_t, and the loss L on top; the parameters W_hx, W_hh, W_qh
//! (and b_h, b_q) are nodes of their own, with an edge to every node they enter. Each edge is
//! one dependency of the forward equations (docs/model.md):
//!
//! ```text
//! h_t ← x_t, h_{t−1}, W_hx, W_hh (, b_h)     o_t ← h_t, W_qh (, b_q)
//! ℓ_t ← o_t, y_t                              L ← ℓ_t for every step with a loss term
//! ```
//!
//! The run annotates it: each h_t (h_0 included) and each edge h_{t−1} → h_t is coloured, and
//! the edge widened, by one gradient's norm on a log scale with a legend, so the gradient can
//! be followed back through time (the backward pass runs from t = T down to 1, right to left):
//! ‖∂L/∂h_t‖, or the reach ‖∂L_T/∂h_t‖ of the last step's loss alone (`GraphOf`). The footer
//! says which, and how to read it.
//!
//! With segments or randomised truncation (`truncate` random:P), an edge h_t → h_{t+1} whose carried gradient is
//! cut (c_t = 0) is drawn grey and thin with a cut mark: it is still a forward dependency, but
//! no gradient flows back along it.
//!
//! Large T: up to `ALL_STEPS_UP_TO` steps are all drawn; beyond that the first and the last
//! `END_STEPS` steps are, with an ellipsis column between them standing for the others (the
//! hidden chain runs through it as one dashed edge).
//!
//! `layout` places everything (`picture` has the pieces, `scale` the colour scale); `svg`,
//! `png` and `dot` write it out.

mod dot;
mod layout;
mod picture;
mod png;
mod scale;
mod svg;

use std::path::Path;

pub use layout::{ALL_STEPS_UP_TO, END_STEPS, drawn_steps};

use crate::check::CheckReport;
use crate::error::{Error, Result};
use crate::model::{Activation, LossAt, LossFn};

/// Which gradient the graph colours the h chain by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphOf {
    /// ‖∂L/∂h_t‖, the whole loss's gradient: with a loss at every step each h_t has its own
    /// term a step or two away, so it does not show vanishing.
    #[default]
    GradHNorm,
    /// The reach ‖∂L_T/∂h_t‖, the last step's loss alone: what vanishes or explodes.
    Reach,
}

crate::choice!(GraphOf {
    GradHNorm => "grad-h-norm": "‖∂L/∂h_t‖, the whole loss's gradient (the default with a loss at every step; it does not show vanishing, as each step's own loss term keeps it up)",
    Reach => "reach": "the reach ‖∂L_T/∂h_t‖, the last step's loss alone: what vanishes or explodes (the default with `loss_at` last, where the two are the same)",
});

/// What the graph shows: the problem's structure and one gradient of the run along the h chain.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSpec {
    pub steps: usize,
    pub loss_at: LossAt,
    pub bias: bool,
    pub activation: Activation,
    pub loss_fn: LossFn,
    /// Which gradient `values` holds.
    pub quantity: GraphOf,
    /// The norm of that gradient at h_t for t = 1..T (‖∂L/∂h_t‖ or ‖∂L_T/∂h_t‖).
    pub values: Vec<f64>,
    /// The same at h_0, when known.
    pub h0_value: Option<f64>,
    /// What was computed beyond plain BPTT (truncation, segments, clipping), one line each.
    pub variant: Vec<String>,
    /// The carry multipliers c_t, t = 0..T−1, of the gradient sent back along h_t → h_{t+1}
    /// (`--segments`: 0 at the boundaries; `--truncate random:P`: 0 or 1/(1−P)); an edge with
    /// c_t = 0 is drawn cut. None: every edge carries the gradient unscaled.
    pub carry: Option<Vec<f64>>,
    /// Why an edge is cut, for the legend ("a segment boundary").
    pub cut_reason: Option<String>,
}

impl GraphOf {
    /// The quantity drawn when none is asked for: ‖∂L/∂h_t‖, or the reach with a loss at the
    /// last step only (where the two are the same numbers).
    pub fn default_for(loss_at: LossAt) -> Self {
        match loss_at {
            LossAt::All => GraphOf::GradHNorm,
            LossAt::Last => GraphOf::Reach,
        }
    }
}

impl GraphSpec {
    /// The graph of a finished check, coloured by the default quantity for its loss
    /// (`GraphOf::default_for`).
    pub fn from_report(r: &CheckReport) -> Self {
        Self::from_report_of(r, GraphOf::default_for(r.loss_at))
    }

    /// The graph of a finished check coloured by `quantity`: its problem, that gradient, and
    /// the cuts its segments or randomised truncation made (the very multipliers the run
    /// used), so the graph shows which edges carry no gradient back.
    pub fn from_report_of(r: &CheckReport, quantity: GraphOf) -> Self {
        let (values, h0_value) = match quantity {
            GraphOf::GradHNorm => (r.grad_h_norm.clone(), r.grad_norms.get("grad_h0").copied()),
            GraphOf::Reach => (r.reach.clone(), r.reach_h0),
        };
        GraphSpec {
            steps: r.shape.steps,
            loss_at: r.loss_at,
            bias: r.bias,
            activation: r.activation,
            loss_fn: r.loss_fn,
            quantity,
            values,
            h0_value,
            variant: r.variant.clone(),
            carry: r.cuts.as_ref().map(|c| c.carry.clone()),
            cut_reason: r.cuts.as_ref().map(|c| c.reason.clone()),
        }
    }
}

/// The formats a graph is written in, by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Svg,
    Png,
    Dot,
}

impl GraphFormat {
    /// The format for `path`'s extension (case-insensitive), or an error naming the choices.
    pub fn of(path: &Path) -> std::result::Result<Self, String> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(GraphFormat::Svg),
            Some("png") => Ok(GraphFormat::Png),
            Some("dot") | Some("gv") => Ok(GraphFormat::Dot),
            _ => Err(format!("the graph is written as .svg, .png or .dot (Graphviz), not '{}'", path.display())),
        }
    }
}

/// Writes the graph of a finished check to `path` as SVG, PNG or Graphviz text, by its
/// extension, coloured by the default quantity for its loss (`GraphOf::default_for`).
pub fn write_graph(path: &Path, report: &CheckReport) -> Result<()> {
    write_spec(path, &GraphSpec::from_report(report))
}

/// `write_graph`, coloured by `quantity`.
pub fn write_graph_of(path: &Path, report: &CheckReport, quantity: GraphOf) -> Result<()> {
    write_spec(path, &GraphSpec::from_report_of(report, quantity))
}

/// Writes the graph of `spec` to `path` as SVG, PNG or Graphviz text, by its extension: drawn
/// in memory, then written atomically like every file bptt writes (`io::write_atomic`).
pub fn write_spec(path: &Path, spec: &GraphSpec) -> Result<()> {
    let format = GraphFormat::of(path).map_err(Error::Invalid)?;
    let picture = layout::layout(spec);
    let bytes = match format {
        GraphFormat::Svg => svg::render(&picture).into_bytes(),
        GraphFormat::Dot => dot::render(&picture).into_bytes(),
        GraphFormat::Png => {
            crate::plot::register_font(path)?;
            png::render(&picture).map_err(|e| Error::Io {
                path: path.display().to_string(),
                reason: format!("drawing the graph failed: {e}"),
            })?
        }
    };
    crate::io::write_atomic(path, &bytes)
}
