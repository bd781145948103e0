//! Where every node, edge and piece of text of the graph goes, in pixels (y down). The
//! renderers only draw what is here: rectangles, polylines (curves are flattened), triangles
//! for arrowheads, and text.

use super::picture::{Anchor, Edge, FillRect, Kind, Label, Line, Node, Picture, Rgb, Text};
use super::scale::{LogScale, NO_VALUE, OVERFLOW, colormap, short, text_on};
use super::{GraphOf, GraphSpec};
use crate::model::{LossAt, LossFn};

/// Every step is drawn up to this many steps.
pub const ALL_STEPS_UP_TO: usize = 8;
/// Beyond `ALL_STEPS_UP_TO`, this many steps are drawn at each end, with an ellipsis between.
pub const END_STEPS: usize = 3;

/// The steps drawn, in order, and whether an ellipsis follows the first `END_STEPS` of them
/// (it stands for every step between the two ends).
pub fn drawn_steps(steps: usize) -> (Vec<usize>, bool) {
    if steps <= ALL_STEPS_UP_TO {
        ((1..=steps).collect(), false)
    } else {
        ((1..=END_STEPS).chain(steps + 1 - END_STEPS..=steps).collect(), true)
    }
}

// Geometry, in pixels.
const COLUMN: f64 = 120.0;
const ELLIPSIS_COLUMN: f64 = 100.0;
const PARAM_X: f64 = 58.0;
const H0_X: f64 = 170.0;
const NODE_W: f64 = 46.0;
const NODE_H: f64 = 30.0;
const ROW_TITLE: f64 = 30.0;
const ROW_L: f64 = 96.0;
const ROW_LOSS: f64 = 186.0;
const ROW_O: f64 = 276.0;
const ROW_H: f64 = 386.0;
const ROW_X: f64 = 496.0;
const ROW_VALUES: f64 = 552.0;
// Lanes along which a parameter's edges run to every node it enters.
const LANE_W_QH: f64 = 226.0;
const LANE_B_Q: f64 = 241.0;
const LANE_W_HH: f64 = 331.0;
const LANE_W_HX: f64 = 441.0;
const LANE_B_H: f64 = 456.0;

const INK: Rgb = (40, 40, 40);
const SOFT: Rgb = (120, 120, 120);
const PARAM_EDGE: Rgb = (165, 165, 165);
const PARAM_FILL: Rgb = (222, 222, 222);
const VAR_FILL: Rgb = (255, 255, 255);

struct Builder {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    texts: Vec<Text>,
    rects: Vec<FillRect>,
    lines: Vec<Line>,
}

impl Builder {
    fn node(&mut self, id: &str, label: Label, kind: Kind, (x, y): (f64, f64)) {
        let fill = if kind == Kind::Parameter { PARAM_FILL } else { VAR_FILL };
        let w = if kind == Kind::Parameter { 54.0 } else { NODE_W };
        self.nodes.push(Node {
            id: id.into(),
            label,
            kind,
            x,
            y,
            w,
            h: NODE_H,
            fill,
            stroke: INK,
            text: INK,
            grad_norm: None,
        });
    }

    fn at(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("edges join nodes placed before them")
    }

    /// An edge along `points`, ending with an arrowhead at the last point.
    fn edge(&mut self, from: &str, to: &str, points: Vec<(f64, f64)>, width: f64, color: Rgb) {
        let n = points.len();
        let (tip, before) = (points[n - 1], points[n - 2]);
        let (dx, dy) = (tip.0 - before.0, tip.1 - before.1);
        let len = dx.hypot(dy).max(1e-9);
        let (ux, uy) = (dx / len, dy / len);
        // The head grows a little with the line, so a wide line keeps a visible point.
        let (long, half) = (7.0 + 1.2 * width, 3.5 + 0.8 * width);
        let base = (tip.0 - ux * long, tip.1 - uy * long);
        let arrow = [tip, (base.0 - uy * half, base.1 + ux * half), (base.0 + uy * half, base.1 - ux * half)];
        // The line stops inside the head, so its square end does not poke out of the point.
        let mut points = points;
        points[n - 1] = (tip.0 - ux * long * 0.6, tip.1 - uy * long * 0.6);
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            points,
            arrow,
            width,
            color,
            dashed: false,
            grad_norm: None,
            elided: 0,
            cut: false,
        });
    }

    /// A straight edge between two nodes' borders, centre to centre.
    fn straight(&mut self, from: &str, to: &str) {
        let (a, b) = (self.at(from).clone(), self.at(to).clone());
        let (p, q) = (border(&a, (b.x, b.y)), border(&b, (a.x, a.y)));
        self.edge(from, to, vec![p, q], 1.4, INK);
    }

    /// A parameter's edge: along its lane to just before the target, then into the target's
    /// corner on the lane's side.
    fn parameter_edge(&mut self, param: &str, to: &str, lane: f64) {
        let (p, t) = (self.at(param).clone(), self.at(to).clone());
        let below = lane > t.y;
        let corner = (t.x - t.w / 2.0 + 8.0, if below { t.y + t.h / 2.0 } else { t.y - t.h / 2.0 });
        let turn = t.x - t.w / 2.0 - 14.0;
        let start = (p.x + p.w / 2.0, lane.clamp(p.y - p.h / 2.0 + 4.0, p.y + p.h / 2.0 - 4.0));
        let mut points = vec![start, (p.x + p.w / 2.0 + 10.0, lane)];
        // A quarter curve from the lane into the corner (flattened).
        for k in 0..=8 {
            let s = k as f64 / 8.0;
            let a = s * std::f64::consts::FRAC_PI_2;
            points.push((turn + (corner.0 - turn) * a.sin(), lane + (corner.1 - lane) * (1.0 - a.cos())));
        }
        self.edge(param, to, points, 1.0, PARAM_EDGE);
    }

    fn text(&mut self, (x, y): (f64, f64), content: impl Into<String>, size: f64, anchor: Anchor, color: Rgb) {
        self.texts.push(Text { x, y, content: content.into(), size, anchor, color, italic: false });
    }
}

/// Where the line from n's centre towards `to` leaves n's box.
fn border(n: &Node, to: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (to.0 - n.x, to.1 - n.y);
    let sx = if dx.abs() > 1e-9 { (n.w / 2.0) / dx.abs() } else { f64::INFINITY };
    let sy = if dy.abs() > 1e-9 { (n.h / 2.0) / dy.abs() } else { f64::INFINITY };
    let s = sx.min(sy);
    (n.x + dx * s, n.y + dy * s)
}

/// What every part of the layout needs: the spec, the steps drawn and their columns, and the
/// colour scale.
struct Plan<'a> {
    spec: &'a GraphSpec,
    steps: Vec<usize>,
    ellipsis: bool,
    /// Column centres, one per drawn step (the ellipsis sits after the first `END_STEPS`).
    column: Vec<f64>,
    scale: LogScale,
}

impl Plan<'_> {
    /// ‖∂L/∂h_t‖ for t = 0..T.
    fn norm_at(&self, t: usize) -> Option<f64> {
        if t == 0 { self.spec.h0_value } else { self.spec.values.get(t - 1).copied() }
    }

    /// c_t of the edge h_t → h_{t+1}; 1 without cuts.
    fn carry(&self, t: usize) -> f64 {
        self.spec.carry.as_ref().and_then(|c| c.get(t).copied()).unwrap_or(1.0)
    }

    fn scored(&self, t: usize) -> bool {
        self.spec.loss_at == LossAt::All || t == self.spec.steps
    }

    fn last_x(&self) -> f64 {
        *self.column.last().expect("T ≥ 1")
    }
}

/// The whole picture for `spec`.
pub fn layout(spec: &GraphSpec) -> Picture {
    let (steps, ellipsis) = drawn_steps(spec.steps);
    let mut column = Vec::new();
    let mut x = H0_X;
    for k in 0..steps.len() {
        x += if ellipsis && k == END_STEPS { ELLIPSIS_COLUMN + COLUMN / 2.0 } else { COLUMN };
        column.push(x);
    }
    let all_norms: Vec<f64> = spec.h0_value.iter().chain(&spec.values).copied().collect();
    let plan = Plan { spec, steps, ellipsis, column, scale: LogScale::new(&all_norms) };
    let mut b =
        Builder { nodes: Vec::new(), edges: Vec::new(), texts: Vec::new(), rects: Vec::new(), lines: Vec::new() };

    // Parameters on the left, each at its lane; h_0; L on top.
    b.node("W_qh", Label::new("W", "qh"), Kind::Parameter, (PARAM_X, LANE_W_QH));
    b.node("W_hh", Label::new("W", "hh"), Kind::Parameter, (PARAM_X, LANE_W_HH));
    b.node("W_hx", Label::new("W", "hx"), Kind::Parameter, (PARAM_X, LANE_W_HX));
    if spec.bias {
        // The biases sit just beside their weights' lanes.
        b.node("b_q", Label::new("b", "q"), Kind::Parameter, (PARAM_X, LANE_B_Q + 22.0));
        b.node("b_h", Label::new("b", "h"), Kind::Parameter, (PARAM_X, LANE_B_H + 22.0));
    }
    b.node("h_0", Label::new("h", "0"), Kind::Hidden, (H0_X, ROW_H));
    b.node("L", Label::new("L", ""), Kind::Loss, ((plan.column[0] + plan.last_x()) / 2.0, ROW_L));

    let mut hidden_cuts = 0;
    for k in 0..plan.steps.len() {
        hidden_cuts += place_step(&mut b, &plan, k);
    }
    annotate(&mut b, &plan);
    let right = plan.last_x() + 104.0;
    names_and_ellipsis(&mut b, &plan, right, hidden_cuts);

    let title = title(spec);
    b.text((20.0, ROW_TITLE), title.clone(), 16.0, Anchor::Start, INK);
    let mut y = ROW_TITLE + 20.0;
    for v in &spec.variant {
        b.text((20.0, y), v.clone(), 13.0, Anchor::Start, SOFT);
        y += 16.0;
    }
    let overflow = std::iter::once(plan.norm_at(0))
        .chain(plan.steps.iter().map(|&t| plan.norm_at(t)))
        .any(|g| g.is_some_and(|g| !g.is_finite()));
    let height = legend(&mut b, &plan.scale, ROW_VALUES + 38.0, spec, plan.ellipsis, overflow);
    let width = (right + 170.0).max(900.0);
    Picture { width, height, title, nodes: b.nodes, edges: b.edges, texts: b.texts, rects: b.rects, lines: b.lines }
}

/// The nodes of the k-th drawn step and the edges into them; returns how many cut edges the
/// ellipsis hides (when this step follows it).
fn place_step(b: &mut Builder, plan: &Plan, k: usize) -> usize {
    let (t, cx) = (plan.steps[k], plan.column[k]);
    let id = |base: &str| format!("{base}_{t}");
    b.node(&id("x"), Label::new("x", t.to_string()), Kind::Input, (cx, ROW_X));
    b.node(&id("h"), Label::new("h", t.to_string()), Kind::Hidden, (cx, ROW_H));
    b.node(&id("o"), Label::new("o", t.to_string()), Kind::Output, (cx, ROW_O));
    if plan.scored(t) {
        b.node(&id("l"), Label::new("ℓ", t.to_string()), Kind::LossTerm, (cx, ROW_LOSS));
        b.node(&id("y"), Label::new("y", t.to_string()), Kind::Target, (cx + 58.0, ROW_LOSS));
    }
    // h_t ← h_{t−1}, x_t, W_hh, W_hx (, b_h).
    let hidden_cuts = chain_edge(b, plan, k);
    b.straight(&id("x"), &id("h"));
    b.parameter_edge("W_hh", &id("h"), LANE_W_HH);
    b.parameter_edge("W_hx", &id("h"), LANE_W_HX);
    if plan.spec.bias {
        b.parameter_edge("b_h", &id("h"), LANE_B_H);
    }
    // o_t ← h_t, W_qh (, b_q).
    b.straight(&id("h"), &id("o"));
    b.parameter_edge("W_qh", &id("o"), LANE_W_QH);
    if plan.spec.bias {
        b.parameter_edge("b_q", &id("o"), LANE_B_Q);
    }
    // ℓ_t ← o_t, y_t;  L ← ℓ_t.
    if plan.scored(t) {
        b.straight(&id("o"), &id("l"));
        b.straight(&id("y"), &id("l"));
        b.straight(&id("l"), "L");
    }
    hidden_cuts
}

/// The edge from the previous drawn h into h_t, coloured and widened by ‖∂L/∂h_t‖, or drawn
/// cut; through the ellipsis, dashed. Returns the cut edges the ellipsis hides.
fn chain_edge(b: &mut Builder, plan: &Plan, k: usize) -> usize {
    let t = plan.steps[k];
    let prev = if k == 0 { 0 } else { plan.steps[k - 1] };
    let (from, to) = (format!("h_{prev}"), format!("h_{t}"));
    let elided = t - prev - 1;
    let from_x = b.at(&from).x + NODE_W / 2.0;
    let points = vec![(from_x, ROW_H), (plan.column[k] - NODE_W / 2.0, ROW_H)];
    let g = plan.norm_at(t);
    // Only an edge between neighbours can be drawn cut; the one through the ellipsis says how
    // many of its hidden edges are.
    let cut = elided == 0 && plan.carry(t - 1) == 0.0;
    if cut {
        let mid = (points[0].0 + points[1].0) / 2.0 - 6.0;
        b.edge(&from, &to, points, 1.2, NO_VALUE);
        for dx in [-4.0, 4.0] {
            let mark = vec![(mid + dx - 4.0, ROW_H + 9.0), (mid + dx + 4.0, ROW_H - 9.0)];
            b.lines.push(Line { points: mark, width: 2.0, color: INK });
        }
        b.text((mid, ROW_H - 14.0), "cut", 12.0, Anchor::Middle, SOFT);
    } else {
        let v = g.unwrap_or(f64::NAN);
        b.edge(&from, &to, points, plan.scale.width(v), plan.scale.color(v));
    }
    let chain = b.edges.last_mut().expect("just pushed");
    (chain.grad_norm, chain.elided, chain.dashed, chain.cut) = (if cut { None } else { g }, elided, elided > 0, cut);
    if elided > 0 { (prev..t).filter(|&u| plan.carry(u) == 0.0).count() } else { 0 }
}

/// The annotation: each drawn h filled by its norm, and the norms in a row of their own.
fn annotate(b: &mut Builder, plan: &Plan) {
    for t in std::iter::once(0).chain(plan.steps.iter().copied()) {
        let id = format!("h_{t}");
        let g = plan.norm_at(t);
        let node = b.nodes.iter_mut().find(|n| n.id == id).expect("placed before");
        node.grad_norm = g;
        if let Some(g) = g {
            node.fill = plan.scale.color(g);
            node.text = text_on(node.fill);
        }
        let x = node.x;
        b.text((x, ROW_VALUES), g.map_or("–".into(), short), 12.0, Anchor::Middle, INK);
    }
    b.text((plan.last_x() + 104.0, ROW_VALUES), quantity_name(plan.spec.quantity), 13.0, Anchor::Start, INK);
}

/// The rows' names on the right, and the ellipsis column's marks.
fn names_and_ellipsis(b: &mut Builder, plan: &Plan, right: f64, hidden_cuts: usize) {
    let all = plan.spec.loss_at == LossAt::All;
    for (y, name) in [
        (ROW_L, "loss L = mean of the ℓ_t"),
        (ROW_LOSS, if all { "loss terms ℓ_t, targets y_t" } else { "loss term ℓ_T, target y_T" }),
        (ROW_O, "outputs o_t"),
        (ROW_H, "hidden states h_t"),
        (ROW_X, "inputs x_t"),
    ] {
        b.text((right, y + 5.0), name, 13.0, Anchor::Start, SOFT);
        b.texts.last_mut().expect("just pushed").italic = true;
    }
    if !plan.ellipsis {
        return;
    }
    let ex = plan.column[END_STEPS - 1] + (COLUMN / 2.0 + ELLIPSIS_COLUMN) / 2.0 + 10.0;
    // The loss row has hidden columns only when every step has a loss term.
    let rows = if all { &[ROW_LOSS, ROW_O, ROW_X][..] } else { &[ROW_O, ROW_X][..] };
    for &y in rows {
        b.text((ex, y + 6.0), "⋯", 22.0, Anchor::Middle, SOFT);
    }
    b.text((ex, ROW_H - 12.0), format!("{} steps", plan.spec.steps - 2 * END_STEPS), 12.0, Anchor::Middle, SOFT);
    b.text((ex, ROW_H + 24.0), "not drawn", 12.0, Anchor::Middle, SOFT);
    if hidden_cuts > 0 {
        b.text((ex, ROW_H + 38.0), format!("({hidden_cuts} cut)"), 12.0, Anchor::Middle, SOFT);
    }
}

/// "Unrolled computation graph, T = 3: h_t = W_hx x_t + W_hh h_t−1, mse loss at every step".
fn title(spec: &GraphSpec) -> String {
    let loss_name = match spec.loss_fn {
        LossFn::Mse => "mse",
        LossFn::Xent => "cross-entropy",
    };
    let a = if spec.bias { "W_hx x_t + W_hh h_t−1 + b_h" } else { "W_hx x_t + W_hh h_t−1" };
    let h = if spec.activation == crate::model::Activation::Tanh { format!("tanh({a})") } else { a.to_string() };
    let at = if spec.loss_at == LossAt::All { "every step" } else { "the last step" };
    format!("Unrolled computation graph, T = {}: h_t = {h}, {loss_name} loss at {at}", spec.steps)
}

/// The quantity's short name, for the values row.
fn quantity_name(q: GraphOf) -> &'static str {
    match q {
        GraphOf::GradHNorm => "‖∂L/∂h_t‖",
        GraphOf::Reach => "reach ‖∂L_T/∂h_t‖",
    }
}

/// The colour bar with its decades, and the lines that say what the colours show and how to
/// read the graph; returns the picture's height.
fn legend(b: &mut Builder, scale: &LogScale, top: f64, spec: &GraphSpec, ellipsis: bool, overflow: bool) -> f64 {
    let (nt, cut) = (spec.steps, spec.cut_reason.as_deref());
    let (x0, bar_w, bar_h) = (40.0, 340.0, 14.0);
    let what = match spec.quantity {
        GraphOf::GradHNorm => "‖∂L/∂h_t‖, the gradient of the whole loss L,",
        GraphOf::Reach => "the reach ‖∂L_T/∂h_t‖, the gradient of the last step's loss alone,",
    };
    b.text(
        (x0, top + 12.0),
        format!("Colours: {what} on a log scale: the fill of h_t, and the colour and width of the edge h_t−1 → h_t"),
        13.0,
        Anchor::Start,
        INK,
    );
    let bar_y = top + 22.0;
    let pieces = 68;
    for k in 0..pieces {
        let w = bar_w / pieces as f64;
        let u = (k as f64 + 0.5) / pieces as f64;
        b.rects.push(FillRect { x: x0 + k as f64 * w, y: bar_y, w: w + 0.5, h: bar_h, fill: colormap(u) });
    }
    // Both ends, and the whole decades between them that leave room for their labels (at
    // most 8, evenly spaced).
    let span = scale.hi - scale.lo;
    let mut ticks: Vec<(f64, String)> =
        vec![(scale.lo, short(10f64.powf(scale.lo))), (scale.hi, short(10f64.powf(scale.hi)))];
    let (first, last) = (scale.lo.ceil() as i64, scale.hi.floor() as i64);
    if last >= first {
        let step = ((last - first) as usize / 8 + 1) as i64;
        let mut d = first;
        while d <= last {
            let room = (d as f64 - scale.lo).min(scale.hi - d as f64) / span;
            if room > 0.15 {
                ticks.push((d as f64, format!("1e{d}")));
            }
            d += step;
        }
    }
    for (v, label) in ticks {
        let x = x0 + bar_w * (v - scale.lo) / (scale.hi - scale.lo);
        b.rects.push(FillRect { x: x - 0.5, y: bar_y + bar_h, w: 1.0, h: 5.0, fill: INK });
        b.text((x, bar_y + bar_h + 18.0), label, 11.0, Anchor::Middle, INK);
    }
    let mut y = bar_y + bar_h + 44.0;
    let mut line = |b: &mut Builder, s: &str| {
        b.text((x0, y), s, 13.0, Anchor::Start, INK);
        y += 18.0;
    };
    line(
        b,
        "Forward, left to right: each arrow is one dependency of the forward equations; grey boxes are parameters.",
    );
    line(
        b,
        "Backward, right to left from t = T down to 1: ∂L/∂h_t = ∂L/∂a_t+1·W_hh + ∂L/∂o_t·W_qh flows back along the h chain.",
    );
    match (spec.quantity, spec.loss_at) {
        (GraphOf::GradHNorm, LossAt::All) => {
            line(
                b,
                "‖∂L/∂h_t‖ sums every later loss term's gradient, and each h_t has its own term a step or two away: it stays up",
            );
            line(
                b,
                "even when far terms vanish, so this chain does not show vanishing; the graph of the reach ‖∂L_T/∂h_t‖ does.",
            );
        }
        _ => line(
            b,
            "A chain that darkens and thins towards t = 1 shows vanishing gradients; one that brightens and widens, exploding ones.",
        ),
    }
    if let Some(reason) = cut {
        line(
            b,
            &format!(
                "A grey edge marked \"cut\" is still a forward dependency, but no gradient flows back along it: {reason}."
            ),
        );
    }
    if overflow {
        line(
            b,
            &format!(
                "A grey h_t labelled \"{OVERFLOW}\" has no finite {} (NaN or ∞): the run overflowed there, and the check failed.",
                quantity_name(spec.quantity)
            ),
        );
    }
    if ellipsis {
        line(
            b,
            &format!(
                "T = {nt} > {ALL_STEPS_UP_TO}: the first and last {END_STEPS} steps are drawn; the dashed edge stands for the {} between.",
                nt - 2 * END_STEPS
            ),
        );
    }
    y + 4.0
}
