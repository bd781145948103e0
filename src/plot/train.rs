//! The training curve as a picture (`--plot`): the training and held-out metric against the
//! iteration on a linear axis, with the task's memoryless baseline as a dashed line.

use std::path::Path;

use plotters::prelude::*;

use crate::error::Result;
use crate::train::TrainReport;

const SIZE: (u32, u32) = (900, 560);

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

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    r: &TrainReport,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let train: Vec<(f64, f64)> = r.curve.iter().map(|c| (c.iter as f64, c.train)).collect();
    let held: Vec<(f64, f64)> = r.eval.iter().map(|e| (e.iter as f64, e.loss)).collect();
    let values = train.iter().chain(&held).map(|p| p.1).chain([r.baseline]).filter(|v| v.is_finite());
    let top = values.fold(0.0f64, f64::max) * 1.05;
    let title = format!("{} task, {} RNN, T = {}, h = {}", r.task, r.activation, r.steps, r.hidden);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..r.iters as f64, 0.0..top.max(1e-9))?;
    chart.configure_mesh().x_desc("iteration").y_desc(r.metric).draw()?;
    let colors = [crate::plot::series_color(0), crate::plot::series_color(1), (90, 90, 90)];
    let rgb = |c: (u8, u8, u8)| RGBColor(c.0, c.1, c.2);
    chart
        .draw_series(LineSeries::new(train, rgb(colors[0]).stroke_width(2)))?
        .label("training")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], rgb(colors[0]).stroke_width(3)));
    chart
        .draw_series(LineSeries::new(held.clone(), rgb(colors[1]).stroke_width(2)))?
        .label("held-out")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], rgb(colors[1]).stroke_width(3)));
    chart.draw_series(held.iter().map(|&p| Circle::new(p, 3, rgb(colors[1]).filled())))?;
    let baseline = r.baseline;
    let dashes = (0..40).map(|k| {
        let x0 = r.iters as f64 * k as f64 / 40.0;
        PathElement::new(vec![(x0, baseline), (x0 + r.iters as f64 / 80.0, baseline)], rgb(colors[2]).stroke_width(2))
    });
    chart
        .draw_series(dashes)?
        .label("memoryless baseline")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], rgb(colors[2]).stroke_width(2)));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}
