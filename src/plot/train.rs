//! The training curve as a picture (`--plot`), in two panels over the iterations:
//! - the training and held-out metric on a log axis (a first window's MSE of 1000 and a
//!   final 0.005 both readable), with the task's memoryless baseline dashed and the spikes
//!   (iterations above 100× the running loss) marked;
//! - the gradient's global norm ‖g‖ before clipping (mean per log window) on a log axis, with
//!   the clipping threshold θ dashed when there is one: above the line, the update was clipped.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::decade_label;
use crate::error::Result;
use crate::train::TrainReport;

const SIZE: (u32, u32) = (960, 720);
/// The loss panel's share of the height.
const TOP: u32 = 430;

/// Writes the training curve of a finished run to `path` (.svg or .png), atomically
/// (`plot::write_figure`).
pub fn write_train_plot(path: &Path, r: &TrainReport) -> Result<()> {
    super::write_figure(
        path,
        SIZE,
        "plot",
        |root| draw(root, r).map_err(|e| e.to_string()),
        |root| draw(root, r).map_err(|e| e.to_string()),
    )
}

/// (iteration, log10 value) of the plottable (finite, > 0) points.
fn logged(points: impl Iterator<Item = (usize, f64)>) -> Vec<(f64, f64)> {
    points.filter(|(_, v)| v.is_finite() && *v > 0.0).map(|(i, v)| (i as f64, v.log10())).collect()
}

/// The log10 range of `values` with a margin of 0.15 decades, at least half a decade high.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (-1.0, 1.0);
    }
    let mid = (lo + hi) / 2.0;
    let half = ((hi - lo) / 2.0 + 0.15).max(0.25);
    (mid - half, mid + half)
}

/// A log-axis tick: plain digits between 0.001 and 10⁴ ("0.63", "25"), powers of ten outside.
fn tick(v: f64) -> String {
    let x = 10f64.powf(v);
    if !(1e-3..1e4).contains(&x) {
        return decade_label(v);
    }
    let decimals = (1 - x.log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// A legend's key for a series drawn as a line: 20 pixels of colour `c`, `width` wide.
fn line_key(c: (u8, u8, u8), width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], rgb(c).stroke_width(width))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &TrainReport,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(TOP);
    let x_max = (r.iters as f64).max(1.0);
    let [train_c, held_c, base_c, spike_c, norm_c] =
        [crate::plot::series_color(0), crate::plot::series_color(1), (90, 90, 90), (214, 39, 40), (44, 160, 44)];

    // The loss panel.
    let train = logged(r.curve.iter().map(|c| (c.iter, c.train)));
    let held = logged(r.eval.iter().map(|e| (e.iter, e.loss)));
    let spikes = logged(r.spikes.iter().map(|s| (s.iter, s.train)));
    let baseline = r.baseline.log10();
    let (lo, hi) = range(train.iter().chain(&held).chain(&spikes).map(|p| p.1).chain([baseline]));
    let mut title = format!("{} task, {} RNN, T = {}, h = {}", r.task, r.activation, r.steps, r.hidden);
    if let Some(t) = &r.truncate {
        title.push_str(&format!(", truncated {}", t.as_str().map_or(format!("K = {t}"), str::to_string)));
    }
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(28)
        .x_label_area_size(36)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..x_max, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(format!("{} (log scale)", r.metric))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    chart
        .draw_series(LineSeries::new(train, rgb(train_c).stroke_width(2)))?
        .label("training (mean per log window)")
        .legend(line_key(train_c, 3));
    chart
        .draw_series(LineSeries::new(held.clone(), rgb(held_c).stroke_width(2)))?
        .label("held-out")
        .legend(line_key(held_c, 3));
    chart.draw_series(held.iter().map(|&p| Circle::new(p, 3, rgb(held_c).filled())))?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, baseline), (x_max, baseline)],
            9,
            6,
            rgb(base_c).stroke_width(2),
        ))?
        .label(format!("memoryless baseline {}", crate::format::significant(r.baseline, 4)))
        .legend(line_key(base_c, 2));
    if !spikes.is_empty() {
        chart
            .draw_series(spikes.iter().map(|&p| Cross::new(p, 6, rgb(spike_c).stroke_width(2))))?
            .label(format!("spikes (> {}× the running loss)", crate::train::SPIKE_FACTOR))
            .legend(move |(x, y)| Cross::new((x + 10, y), 5, rgb(spike_c).stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // The gradient panel.
    let norms = logged(r.curve.iter().map(|c| (c.iter, c.grad_norm)));
    let theta = r.clip.map(f64::log10);
    let (lo, hi) = range(norms.iter().map(|p| p.1).chain(theta));
    let mut chart = ChartBuilder::on(&bottom)
        .margin(16)
        .margin_right(28)
        .x_label_area_size(36)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..x_max, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("‖g‖ before clipping (log)")
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    chart
        .draw_series(LineSeries::new(norms, rgb(norm_c).stroke_width(2)))?
        .label("‖g‖, the gradient's global norm before clipping (mean per log window)")
        .legend(line_key(norm_c, 3));
    if let (Some(t), Some(theta)) = (r.clip, theta) {
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, theta), (x_max, theta)], 9, 6, rgb(base_c).stroke_width(2)))?
            .label(format!("clip θ = {t}: above it the update is scaled down to θ"))
            .legend(line_key(base_c, 2));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
