//! Reading the profile plots back: the data polylines of an SVG written by `bptt::plot`.

/// The value of attribute `name` in one SVG element's text.
pub fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// The data lines of one colour (plotted at stroke width 2; the legend's sample lines are 3).
pub fn data_polylines(svg: &str, color: (u8, u8, u8)) -> Vec<Vec<(f64, f64)>> {
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    svg.split("<polyline")
        .skip(1)
        .map(|e| &e[..e.find("/>").expect("closed polyline")])
        .filter(|e| attr(e, "stroke") == Some(&hex) && attr(e, "stroke-width") == Some("2"))
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
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let b = sxy / sxx;
    let worst = points.iter().map(|p| (p.1 - (my + b * (p.0 - mx))).abs()).fold(0.0, f64::max);
    (b, worst)
}
