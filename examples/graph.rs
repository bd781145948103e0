use std::path::Path;

use bptt::{CheckConfig, Engines, LossAt, ProblemSpec, Shape, check, random_problem};

fn main() -> bptt::Result<()> {
    // T = 6 steps, the loss at the last step only, w_hh at spectral radius 0.5: the gradient
    // fades going back in time, and the graph shows it.
    let mut spec = ProblemSpec::new(Shape::new(6, 1, 4, 16, 4)?);
    spec.spectral_radius = Some(0.5);
    spec.loss_at = LossAt::Last;
    let problem = random_problem(&spec)?;

    // The f64 reference alone is enough to draw the graph (no GPU needed).
    let config = CheckConfig { compute: Engines::Reference, ..CheckConfig::default() };
    let report = check(&problem, &config)?;
    let out = std::env::temp_dir().join("bptt-graph.svg");
    bptt::graph::write_graph(Path::new(&out), &report)?;
    println!("graph of {} steps written to {}", report.shape.steps, out.display());
    Ok(())
}
