use bptt::{CheckConfig, ProblemSpec, Shape, check, random_problem};

fn main() -> bptt::Result<()> {
    // A seeded random problem: T = 32 steps, batch 4, input 8, hidden 64, output 8.
    let mut spec = ProblemSpec::new(Shape::new(32, 4, 8, 64, 8)?);
    spec.spectral_radius = Some(0.9);
    let problem = random_problem(&spec)?;

    // The gradient check: the GPU against the f64 reference, the fast CPU path timed too.
    // `CheckConfig` has every option of the command (schedule, tolerance, truncate, clip, ...).
    let report = check(&problem, &CheckConfig::default())?;
    println!(
        "loss {:.6}; check {:?} (largest relative error {:.1e})",
        report.loss,
        report.pass,
        report.worst_rel_err()
    );
    println!("‖∂L/∂h_t‖ at t = 1: {:.3e}, t = T: {:.3e}", report.grad_h_norm[0], report.grad_h_norm[31]);
    if let Some(factor) = report.reach_factor {
        println!("each step back multiplies the last step's gradient by about {factor:.3}");
    }

    // The gradients the report describes, saved as the command's --save does.
    let out = std::env::temp_dir().join("bptt-grads.safetensors");
    let result = report.result.as_ref().expect("a single problem's report keeps its result");
    bptt::io::save_grads(&out, result, &problem.shape, false, &Default::default())?;
    println!("saved grads to {}", out.display());
    Ok(())
}
