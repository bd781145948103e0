//! The graph as PNG, drawn with plotters' bitmap backend from the same layout as the SVG, at
//! `SCALE` times its size. Subscripts are drawn as smaller, lowered text after their base.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::picture::{Anchor, Picture, Rgb, Text};
use super::svg::pieces;

const SCALE: f64 = 1.5;

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn px((x, y): (f64, f64)) -> (i32, i32) {
    ((x * SCALE).round() as i32, (y * SCALE).round() as i32)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), String>;

/// The dashes of a polyline: `on` pixels drawn, `off` skipped.
fn dashes(points: &[(f64, f64)], on: f64, off: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut current = vec![points[0]];
    let (mut drawing, mut left) = (true, on);
    for w in points.windows(2) {
        let (mut a, b) = (w[0], w[1]);
        let mut len = (b.0 - a.0).hypot(b.1 - a.1);
        while len > left {
            let f = left / len;
            let p = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
            if drawing {
                current.push(p);
                out.push(std::mem::take(&mut current));
            } else {
                current = vec![p];
            }
            len -= left;
            a = p;
            drawing = !drawing;
            left = if drawing { on } else { off };
        }
        left -= len;
        if drawing {
            current.push(b);
        }
    }
    if drawing && current.len() > 1 {
        out.push(current);
    }
    out
}

fn text(area: &Area, t: &Text) -> DrawResult {
    let parts = pieces(&t.content);
    let size = |sub: bool| if sub { t.size * 0.72 } else { t.size } * SCALE;
    let style = |sub: bool| ("sans-serif", size(sub)).into_font().color(&color(t.color));
    let mut widths = Vec::new();
    for (p, sub) in &parts {
        widths.push(area.estimate_text_size(p, &style(*sub)).map_err(|e| e.to_string())?.0 as f64);
    }
    let total: f64 = widths.iter().sum();
    let mut x = t.x * SCALE
        - match t.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => total / 2.0,
        };
    for ((p, sub), w) in parts.iter().zip(widths) {
        // VPos::Bottom puts the descent below the baseline: lift by about a fifth of the size.
        let y = (t.y + if *sub { t.size * 0.3 } else { 0.0 }) * SCALE + 0.22 * size(*sub);
        let st = style(*sub).pos(Pos::new(HPos::Left, VPos::Bottom));
        area.draw(&plotters::element::Text::new(p.clone(), (x.round() as i32, y.round() as i32), st))
            .map_err(|e| e.to_string())?;
        x += w;
    }
    Ok(())
}

fn draw(area: &Area, pic: &Picture) -> DrawResult {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    for e in &pic.edges {
        let style = color(e.color).stroke_width((e.width * SCALE).round().max(1.0) as u32);
        let lines = if e.dashed { dashes(&e.points, 6.0, 5.0) } else { vec![e.points.clone()] };
        for line in lines {
            area.draw(&PathElement::new(line.into_iter().map(px).collect::<Vec<_>>(), style)).map_err(err)?;
        }
        area.draw(&Polygon::new(e.arrow.iter().copied().map(px).collect::<Vec<_>>(), color(e.color).filled()))
            .map_err(err)?;
    }
    for n in &pic.nodes {
        let corners = [px((n.x - n.w / 2.0, n.y - n.h / 2.0)), px((n.x + n.w / 2.0, n.y + n.h / 2.0))];
        area.draw(&Rectangle::new(corners, color(n.fill).filled())).map_err(err)?;
        area.draw(&Rectangle::new(corners, color(n.stroke).stroke_width(2))).map_err(err)?;
        let label = n.label_text();
        text(area, &label)?;
    }
    for l in &pic.lines {
        let style = color(l.color).stroke_width((l.width * SCALE).round().max(1.0) as u32);
        area.draw(&PathElement::new(l.points.iter().copied().map(px).collect::<Vec<_>>(), style)).map_err(err)?;
    }
    for r in &pic.rects {
        let corners = [px((r.x, r.y)), px((r.x + r.w, r.y + r.h))];
        area.draw(&Rectangle::new(corners, color(r.fill).filled())).map_err(err)?;
    }
    for t in &pic.texts {
        text(area, t)?;
    }
    Ok(())
}

/// The picture as PNG bytes, drawn in memory.
pub fn render(pic: &Picture) -> std::result::Result<Vec<u8>, String> {
    let size = ((pic.width * SCALE).ceil() as u32, (pic.height * SCALE).ceil() as u32);
    let mut rgb = vec![0u8; 3 * size.0 as usize * size.1 as usize];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&area, pic)?;
        area.present().map_err(|e| e.to_string())?;
    }
    crate::plot::png_bytes(&rgb, size)
}
