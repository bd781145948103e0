//! What the graph is made of, in pixels (y down): boxes (nodes), edges (polylines with an
//! arrowhead), text, plain lines and filled rectangles. `layout` builds one; the renderers
//! draw nothing else.

pub type Rgb = (u8, u8, u8);

/// A label with an optional subscript: ("h", "2") is h₂.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub base: String,
    pub sub: String,
}

impl Label {
    pub fn new(base: &str, sub: impl Into<String>) -> Self {
        Label { base: base.into(), sub: sub.into() }
    }

    /// "h_2", "L".
    pub fn plain(&self) -> String {
        if self.sub.is_empty() { self.base.clone() } else { format!("{}_{}", self.base, self.sub) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Input,
    Hidden,
    Output,
    LossTerm,
    Target,
    Loss,
    Parameter,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Hidden => "hidden",
            Kind::Output => "output",
            Kind::LossTerm => "loss-term",
            Kind::Target => "target",
            Kind::Loss => "loss",
            Kind::Parameter => "parameter",
        }
    }
}

/// A box, centred at (x, y).
#[derive(Clone, Debug)]
pub struct Node {
    /// ASCII identifier, e.g. "h_2", "l_3" (ℓ_3), "W_hx".
    pub id: String,
    pub label: Label,
    pub kind: Kind,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub fill: Rgb,
    pub stroke: Rgb,
    pub text: Rgb,
    /// ‖∂L/∂h_t‖ for the hidden states.
    pub grad_norm: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub points: Vec<(f64, f64)>,
    pub arrow: [(f64, f64); 3],
    pub width: f64,
    pub color: Rgb,
    pub dashed: bool,
    /// ‖∂L/∂h_t‖ of the head, for the edges h_{t−1} → h_t.
    pub grad_norm: Option<f64>,
    /// Steps not drawn between the two ends (the edge through the ellipsis).
    pub elided: usize,
    /// No gradient flows back along this edge (a carry multiplier of 0).
    pub cut: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
}

#[derive(Clone, Debug)]
pub struct Text {
    pub x: f64,
    /// The baseline.
    pub y: f64,
    pub content: String,
    pub size: f64,
    pub anchor: Anchor,
    pub color: Rgb,
    pub italic: bool,
}

impl Node {
    /// The node's label as text: italic, centred in the box (both writers draw it so).
    pub fn label_text(&self) -> Text {
        Text {
            x: self.x,
            y: self.y + 5.5,
            content: self.label.plain(),
            size: 17.0,
            anchor: Anchor::Middle,
            color: self.text,
            italic: true,
        }
    }
}

/// A plain line (the cut marks).
#[derive(Clone, Debug)]
pub struct Line {
    pub points: Vec<(f64, f64)>,
    pub width: f64,
    pub color: Rgb,
}

#[derive(Clone, Debug)]
pub struct FillRect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub fill: Rgb,
}

#[derive(Clone, Debug)]
pub struct Picture {
    pub width: f64,
    pub height: f64,
    pub title: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub texts: Vec<Text>,
    pub rects: Vec<FillRect>,
    pub lines: Vec<Line>,
}
