//! The graph as Graphviz text (`dot -Tsvg graph.dot`): the same nodes and edges as the
//! picture, one rank per row (inputs at the bottom, L on top), the h chain annotated.

use std::fmt::Write;

use super::picture::{Kind, Picture, Rgb};
use super::scale::short;

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// An HTML-like label: the base, its subscript, and an optional small line under it.
fn label(base: &str, sub: &str, note: Option<String>) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = format!("<<I>{}</I>", esc(base));
    if !sub.is_empty() {
        let _ = write!(s, "<SUB>{}</SUB>", esc(sub));
    }
    if let Some(n) = note {
        let _ = write!(s, r#"<BR/><FONT POINT-SIZE="9">{}</FONT>"#, esc(&n));
    }
    s.push('>');
    s
}

pub fn render(pic: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// {}", pic.title);
    let _ =
        writeln!(s, "// h_t is filled, and the edge h_t-1 -> h_t coloured and widened, by ||dL/dh_t|| (log scale).");
    let _ = writeln!(s, "digraph bptt {{");
    let _ = writeln!(s, "  rankdir=BT; newrank=true; nodesep=0.35; ranksep=0.45;");
    let _ = writeln!(s, r#"  node [shape=box, style="rounded,filled", fillcolor=white, fontname="DejaVu Sans"];"#);
    for n in &pic.nodes {
        let mut attrs = format!(
            r#"label={}, fillcolor="{}", fontcolor="{}""#,
            label(&n.label.base, &n.label.sub, n.grad_norm.map(short)),
            hex(n.fill),
            hex(n.text)
        );
        if n.kind == Kind::Parameter {
            attrs.push_str(r#", style="filled""#);
        }
        let _ = writeln!(s, r#"  "{}" [{attrs}];"#, n.id);
    }
    // One rank per row, in column order.
    for kind in [Kind::Input, Kind::Hidden, Kind::Output, Kind::LossTerm] {
        let row: Vec<String> = pic.nodes.iter().filter(|n| n.kind == kind).map(|n| format!("\"{}\"", n.id)).collect();
        if !row.is_empty() {
            let _ = writeln!(s, "  {{ rank=same; {}; }}", row.join("; "));
        }
    }
    for e in &pic.edges {
        let mut attrs = format!(r#"color="{}", penwidth={:.2}"#, hex(e.color), e.width);
        if let Some(g) = e.grad_norm {
            let _ = write!(attrs, r#", label="{}", fontsize=9"#, short(g));
        }
        if e.cut {
            attrs.push_str(r#", label="cut", fontsize=9, style=dashed"#);
        }
        if e.dashed {
            let _ = write!(attrs, r#", style=dashed, xlabel="{} steps not drawn""#, e.elided);
        }
        if e.from.starts_with(['W', 'b']) {
            // Parameters feed many nodes: do not let them pull the rows apart.
            attrs.push_str(", constraint=false");
        }
        let _ = writeln!(s, r#"  "{}" -> "{}" [{attrs}];"#, e.from, e.to);
    }
    s.push_str("}\n");
    s
}
