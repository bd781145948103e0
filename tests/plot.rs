//! The profile plots: the SVG's lines are read back and must sit where the values put them
//! (pixel x linear in t, pixel y linear in log10 of the value, one scale for every series);
//! the PNG must be a real image of the stated size with each series' colour drawn.

mod common;

use common::svg::{data_polylines, line_fit};

use bptt::Error;
use bptt::plot::{Series, plot_profiles, series_color};

const STEPS: usize = 48;

/// Three profiles: a geometric decay over 19 decades, one with a zero, a NaN and an Inf
/// (left out, breaking its line into three runs), and one with no plottable value at all.
fn profiles() -> Vec<Series> {
    let decay: Vec<f64> = (1..=STEPS).map(|t| 0.4f64.powi((STEPS - t) as i32)).collect();
    let mut bumpy: Vec<f64> =
        (1..=STEPS).map(|t| 0.02 * 1.1f64.powi((STEPS - t) as i32) * (1.0 + 0.5 * (t as f64).sin())).collect();
    bumpy[9] = 0.0;
    bumpy[10] = f64::NAN;
    bumpy[30] = f64::INFINITY;
    vec![
        Series::new("‖∂L/∂h_t‖ ρ=0.4", decay),
        Series::new("reach ρ=1.1", bumpy),
        Series::new("all zero", vec![0.0; STEPS]),
    ]
}

#[test]
fn svg_lines_sit_where_the_values_put_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("profiles.svg");
    let series = profiles();
    plot_profiles(&path, "Reach of the last step's gradient", &series).expect("plot");
    let svg = std::fs::read_to_string(&path).expect("read svg");

    // (t, log10 value) ↔ (pixel x, pixel y) for every drawn point of every series.
    let mut x_pairs = Vec::new();
    let mut y_pairs = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let lines = data_polylines(&svg, series_color(i));
        let expected: Vec<Vec<(usize, f64)>> = {
            // The runs of plottable values, as the plot is documented to draw them.
            let mut runs: Vec<Vec<(usize, f64)>> = vec![vec![]];
            for (k, &v) in s.values.iter().enumerate() {
                if v.is_finite() && v > 0.0 {
                    runs.last_mut().unwrap().push((k + 1, v));
                } else if !runs.last().unwrap().is_empty() {
                    runs.push(vec![]);
                }
            }
            runs.retain(|r| !r.is_empty());
            runs
        };
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            expected.iter().map(Vec::len).collect::<Vec<_>>(),
            "series {i} ({}): lines and their point counts",
            s.label
        );
        for (line, run) in lines.iter().zip(&expected) {
            for (&(px, py), &(t, v)) in line.iter().zip(run) {
                x_pairs.push((t as f64, px));
                y_pairs.push((v.log10(), py));
            }
        }
    }
    // 48 + 45 points; the third series has none.
    assert_eq!(x_pairs.len(), STEPS + STEPS - 3);

    // plotters writes whole pixels, so a point is off its exact place by at most 0.5 px per
    // axis; 1 px allows for the fitted line's own error.
    let (x_scale, x_worst) = line_fit(&x_pairs);
    let (y_scale, y_worst) = line_fit(&y_pairs);
    println!("px per step {x_scale:.3} (worst {x_worst:.2}), px per decade {y_scale:.3} (worst {y_worst:.2})");
    assert!(x_scale > 10.0, "x must grow with t: {x_scale} px/step");
    assert!(y_scale < -10.0, "larger values must be higher: {y_scale} px/decade");
    assert!(x_worst <= 1.0, "x off its linear axis by {x_worst} px");
    assert!(y_worst <= 1.0, "y off its log axis by {y_worst} px");

    // Title and legend, with the left-out values counted.
    assert!(svg.contains("Reach of the last step&apos;s gradient"));
    assert!(svg.contains("‖∂L/∂h_t‖ ρ=0.4\n"));
    assert!(svg.contains("reach ρ=1.1 (3 zero/non-finite values not shown)"));
    assert!(svg.contains("all zero (48 zero/non-finite values not shown)"));
}

#[test]
fn png_is_an_image_with_every_series_drawn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("profiles.png");
    let series = profiles();
    plot_profiles(&path, "Reach", &series).expect("plot");
    let bytes = std::fs::read(&path).expect("read png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((be32(16), be32(20)), (900, 560), "width × height");

    let image = image::load_from_memory(&bytes).expect("decodable PNG").to_rgb8();
    let count = |c: (u8, u8, u8)| image.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
    let counts: Vec<usize> = (0..series.len()).map(|i| count(series_color(i))).collect();
    println!("pixels per series colour: {counts:?}");
    // A data line across ~800 px at width 2 paints well over 1000 pixels; the legend's
    // sample line alone (30 × 3) paints about 100. The all-zero series has only that.
    assert!(counts[0] > 1000 && counts[1] > 1000, "{counts:?}");
    assert!((50..200).contains(&counts[2]), "only the legend sample: {counts:?}");
    // Text was rendered: dark pixels well beyond the axes' lines.
    let dark = image.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 3000, "{dark} dark pixels: is the text there?");
}

#[test]
fn other_extensions_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, named) in [("plot.pdf", "`.pdf`"), ("plot", "(none)")] {
        let path = dir.path().join(name);
        match plot_profiles(&path, "t", &profiles()) {
            Err(Error::Invalid(msg)) => {
                assert!(msg.contains(named) && msg.contains(".svg or .png"), "{msg}")
            }
            other => panic!("{name}: expected Error::Invalid, got {other:?}"),
        }
        assert!(!path.exists());
    }
}

#[test]
fn empty_and_single_point_plots_still_draw() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["empty.svg", "one.png"] {
        let path = dir.path().join(name);
        let series = if name == "empty.svg" { vec![] } else { vec![Series::new("one step", vec![0.5])] };
        plot_profiles(&path, "edge case", &series).expect("plot");
        assert!(std::fs::metadata(&path).expect("written").len() > 1000);
    }
}

/// Distance from p to the segment a–b.
fn to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let s = if len2 == 0.0 { 0.0 } else { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0) };
    (p.0 - a.0 - s * dx).hypot(p.1 - a.1 - s * dy)
}

#[test]
fn a_dashed_series_shares_its_colour_and_lies_on_its_values() {
    use common::svg::{dashes, line_fit_full};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("styled.svg");
    let solid: Vec<f64> = (1..=STEPS).map(|t| 0.5 * 1.05f64.powi(t as i32)).collect();
    let reach: Vec<f64> = (1..=STEPS).map(|t| 0.7f64.powi((STEPS - t) as i32)).collect();
    let series = vec![
        Series::new("‖∂L/∂h_t‖ ρ=0.7", solid.clone()).with_color(0),
        Series::new("reach ‖∂L_T/∂h_t‖ ρ=0.7", reach.clone()).with_color(0).dashed(),
        Series::new("‖∂L/∂h_t‖ ρ=1.1", solid.iter().map(|v| v * 3.0).collect()).with_color(1),
    ];
    plot_profiles(&path, "styled", &series).expect("plot");
    let svg = std::fs::read_to_string(&path).expect("read svg");

    // Colour 0: one solid line (the first series), and dashes; colour 1: one solid line only.
    let lines = data_polylines(&svg, series_color(0));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].len(), STEPS);
    assert_eq!(data_polylines(&svg, series_color(1)).len(), 1);
    assert!(dashes(&svg, series_color(1)).is_empty());
    let dashed = dashes(&svg, series_color(0));
    assert!(dashed.len() > 20, "{} dashes", dashed.len());

    // The axes from the solid line: pixel x linear in t, pixel y linear in log10 of the value.
    let xs: Vec<(f64, f64)> = lines[0].iter().enumerate().map(|(i, p)| ((i + 1) as f64, p.0)).collect();
    let ys: Vec<(f64, f64)> = lines[0].iter().zip(&solid).map(|(p, v)| (v.log10(), p.1)).collect();
    let ((ax, bx, _), (ay, by, _)) = (line_fit_full(&xs), line_fit_full(&ys));
    let curve: Vec<(f64, f64)> =
        reach.iter().enumerate().map(|(i, v)| (ax + bx * (i + 1) as f64, ay + by * v.log10())).collect();
    // Every dash lies on the reach profile's line (whole pixels: within 1.5 px), and the
    // dashes cover about 9 of every 15 pixels of it.
    let mut drawn = 0.0;
    for dash in &dashed {
        for &p in dash {
            let off = curve.windows(2).map(|w| to_segment(p, w[0], w[1])).fold(f64::INFINITY, f64::min);
            assert!(off <= 1.5, "dash point {p:?} is {off:.2} px off the reach line");
        }
        drawn += dash.windows(2).map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1)).sum::<f64>();
    }
    let length: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1)).sum();
    assert!((0.45..0.75).contains(&(drawn / length)), "dashes cover {:.2} of the line", drawn / length);
    // Each series once in the legend.
    for s in &series {
        assert_eq!(svg.matches(&format!(">\n{}\n</text>", s.label)).count(), 1, "{}", s.label);
    }
}

fn bptt_cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bptt")).args(args).output().expect("run bptt");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_runs_plot_names_its_variant_and_draws_each_profile_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shape = ["--compute", "cpu-ref", "--hidden", "8", "--steps", "12", "--input", "2", "--output", "2"];
    let svg_of = |extra: &[&str]| {
        let path = dir.path().join("run.svg");
        let (code, stderr) = bptt_cli(&[&shape[..], extra, &["--plot", path.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{stderr}");
        std::fs::read_to_string(&path).expect("plot written")
    };
    // Loss at every step: both profiles in one colour, ‖∂L/∂h_t‖ solid and the reach dashed.
    let svg = svg_of(&[]);
    assert_eq!(data_polylines(&svg, series_color(0)).len(), 1);
    assert!(!common::svg::dashes(&svg, series_color(0)).is_empty());
    assert!(svg.contains("the backward pass runs from t = T down to t = 1"));
    // Loss at the last step: the two profiles are the same numbers, drawn and listed once.
    let svg = svg_of(&["--loss-at", "last"]);
    assert_eq!(data_polylines(&svg, series_color(0)).len(), 1);
    assert!(common::svg::dashes(&svg, series_color(0)).is_empty());
    assert_eq!(svg.matches("reach ‖∂L_T/∂h_t‖").count(), 1, "one legend entry");
    assert!(svg.contains("(loss at the last step only)"));
    // The title names what is computed beyond plain BPTT.
    assert!(svg_of(&["--truncate", "3"]).contains("; truncated 3 steps back"));
    assert!(svg_of(&["--segments", "3"]).contains("; 3 segments"));
    assert!(svg_of(&["--truncate", "random:0.2"]).contains("; randomised truncation p = 0.2"));
}
