use bptt::{Device, ProblemSpec, Shape, compute, random_problem};

fn main() -> bptt::Result<()> {
    // A seeded random problem: T = 32 steps, batch 4, input 8, hidden 64, output 8.
    let mut spec = ProblemSpec::new(Shape::new(32, 4, 8, 64, 8)?);
    spec.spectral_radius = Some(0.9);
    let problem = random_problem(&spec)?;

    let grads = compute(&problem, &Device::gpu())?; // or Device::Cpu, Device::CpuRef
    let reference = compute(&problem, &Device::CpuRef)?;
    let err = bptt::model::rel_err(&grads.grad_w_hh, &reference.grad_w_hh);
    println!("loss {:.6} (f64 reference {:.6}); grad_w_hh off by {err:.1e}", grads.loss, reference.loss);
    println!("‖∂L/∂h_t‖ at t = 1: {:.3e}, t = T: {:.3e}", grads.grad_h_norm[0], grads.grad_h_norm[31]);

    let out = std::env::temp_dir().join("bptt-grads.safetensors");
    bptt::io::save_grads(&out, &grads, &problem.shape, false, &Default::default())?;
    println!("saved grads to {}", out.display());
    Ok(())
}
