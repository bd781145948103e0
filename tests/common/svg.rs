//! Reading the profile plots back: the data polylines of an SVG written by `bptt::plot`.

/// The value of attribute `name` in one SVG element's text.
pub fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// The solid data lines of one colour (plotted at `bptt::plot::SOLID_WIDTH`; dashed ones are
/// heavier and the legend's samples heavier still).
pub fn data_polylines(svg: &str, color: (u8, u8, u8)) -> Vec<Vec<(f64, f64)>> {
    polylines(svg, color, bptt::plot::SOLID_WIDTH)
}

/// The dashes of the dashed data lines of one colour, each a polyline.
pub fn dashes(svg: &str, color: (u8, u8, u8)) -> Vec<Vec<(f64, f64)>> {
    polylines(svg, color, bptt::plot::DASHED_WIDTH)
}

fn polylines(svg: &str, color: (u8, u8, u8), width: u32) -> Vec<Vec<(f64, f64)>> {
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    let width = width.to_string();
    svg.split("<polyline")
        .skip(1)
        .map(|e| &e[..e.find("/>").expect("closed polyline")])
        .filter(|e| attr(e, "stroke") == Some(&hex) && attr(e, "stroke-width") == Some(width.as_str()))
        .map(|e| {
            attr(e, "points")
                .expect("points")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .collect()
}

/// Least-squares fit y ≈ a + b·x; returns (b, the largest |residual|).
pub fn line_fit(points: &[(f64, f64)]) -> (f64, f64) {
    let (_, b, worst) = line_fit_full(points);
    (b, worst)
}

/// Least-squares fit y ≈ a + b·x; returns (a, b, the largest |residual|).
pub fn line_fit_full(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let b = sxy / sxx;
    let worst = points.iter().map(|p| (p.1 - (my + b * (p.0 - mx))).abs()).fold(0.0, f64::max);
    (my - b * mx, b, worst)
}
