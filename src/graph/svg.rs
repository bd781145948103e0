//! The graph as SVG, written directly: every node is a `<g class="node">` and every edge a
//! `<g class="edge">` whose data attributes name what it is (`data-id`, `data-label`,
//! `data-kind`, `data-from`, `data-to`, and `data-grad-norm` with the value in full), so the
//! picture can be read back as a graph.

use std::fmt::Write;

use super::picture::{Anchor, Picture, Rgb, Text};

const FONT: &str = "DejaVu Sans, Liberation Sans, Arial, sans-serif";

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A text's pieces, normal and subscript: after `_`, letters, digits, `+` and `−` are set as a
/// subscript ("h_t−1" is h with t−1 below, "∂L/∂a_t+1·W_hh" has two).
pub fn pieces(s: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = vec![(String::new(), false)];
    let mut sub = false;
    for c in s.chars() {
        if c == '_' && !sub {
            sub = true;
            out.push((String::new(), true));
            continue;
        }
        if sub && !(c.is_alphanumeric() || c == '+' || c == '−') {
            sub = false;
            out.push((String::new(), false));
        }
        out.last_mut().expect("never empty").0.push(c);
    }
    out.retain(|(p, _)| !p.is_empty());
    out
}

/// `<tspan>`s for `pieces`, subscripts smaller and lowered (the text after one is raised back
/// on its own span: an empty span's shift is not honoured everywhere). Texts are written with
/// `xml:space="preserve"`, or a space starting a span would be collapsed away.
fn spans(s: &str, size: f64) -> String {
    let mut out = String::new();
    let mut lowered = false;
    for (p, sub) in pieces(s) {
        if sub {
            let _ =
                write!(out, r#"<tspan dy="{:.1}" font-size="{:.1}">{}</tspan>"#, size * 0.3, size * 0.72, escape(&p));
            lowered = true;
        } else if lowered {
            let _ = write!(out, r#"<tspan dy="{:.1}">{}</tspan>"#, -size * 0.3, escape(&p));
            lowered = false;
        } else {
            out.push_str(&escape(&p));
        }
    }
    out
}

fn text(out: &mut String, t: &Text) {
    let anchor = match t.anchor {
        Anchor::Start => "start",
        Anchor::Middle => "middle",
    };
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="{:.1}" text-anchor="{anchor}" fill="{}" xml:space="preserve"{}>{}</text>"#,
        t.x,
        t.y,
        t.size,
        hex(t.color),
        if t.italic { r#" font-style="italic""# } else { "" },
        spans(&t.content, t.size)
    );
}

fn points(p: &[(f64, f64)]) -> String {
    p.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ")
}

pub fn render(pic: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="{FONT}">"#,
        w = pic.width,
        h = pic.height
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&pic.title));
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{:.0}" height="{:.0}" fill="white"/>"#, pic.width, pic.height);
    // Edges first, so the boxes sit on top of them.
    for e in &pic.edges {
        let mut attrs = format!(r#"class="edge" data-from="{}" data-to="{}""#, escape(&e.from), escape(&e.to));
        if let Some(g) = e.grad_norm {
            let _ = write!(attrs, r#" data-grad-norm="{g:e}""#);
        }
        if e.cut {
            attrs.push_str(r#" data-gradient-cut="true""#);
        }
        if e.elided > 0 {
            let _ = write!(attrs, r#" data-elided-steps="{}""#, e.elided);
        }
        let _ = writeln!(s, "<g {attrs}>");
        let _ = writeln!(
            s,
            r#"  <polyline points="{}" fill="none" stroke="{}" stroke-width="{:.2}"{}/>"#,
            points(&e.points),
            hex(e.color),
            e.width,
            if e.dashed { r#" stroke-dasharray="6 5""# } else { "" }
        );
        let _ = writeln!(s, r#"  <polygon points="{}" fill="{}"/>"#, points(&e.arrow), hex(e.color));
        let _ = writeln!(s, "</g>");
    }
    for n in &pic.nodes {
        let mut attrs = format!(
            r#"class="node" data-id="{}" data-label="{}" data-kind="{}""#,
            escape(&n.id),
            escape(&n.label.plain()),
            n.kind.name()
        );
        if let Some(g) = n.grad_norm {
            let _ = write!(attrs, r#" data-grad-norm="{g:e}""#);
        }
        let _ = writeln!(s, "<g {attrs}>");
        let _ = writeln!(
            s,
            r#"  <rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{}" stroke="{}" stroke-width="1.2"/>"#,
            n.x - n.w / 2.0,
            n.y - n.h / 2.0,
            n.w,
            n.h,
            hex(n.fill),
            hex(n.stroke)
        );
        let label = n.label_text();
        s.push_str("  ");
        text(&mut s, &label);
        let _ = writeln!(s, "</g>");
    }
    for l in &pic.lines {
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{:.2}"/>"#,
            points(&l.points),
            hex(l.color),
            l.width
        );
    }
    for r in &pic.rects {
        let _ = writeln!(
            s,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"#,
            r.x,
            r.y,
            r.w,
            r.h,
            hex(r.fill)
        );
    }
    for t in &pic.texts {
        text(&mut s, t);
    }
    s.push_str("</svg>\n");
    s
}
