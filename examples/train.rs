use bptt::{Activation, InitRecurrent, Task, TrainConfig, TrainDevice, train};

fn main() -> bptt::Result<()> {
    // The adding problem at T = 10 with an IRNN (relu, w_hh = I), on the fast CPU path.
    let config = TrainConfig {
        task: Task::Adding,
        steps: Some(10),
        hidden: 32,
        iters: 600,
        lr: Some(0.003),
        activation: Some(Activation::Relu),
        init_recurrent: InitRecurrent::Identity,
        clip: Some(1.0),
        device: TrainDevice::Cpu,
        ..TrainConfig::default()
    };
    let trained = train(&config)?;
    let r = &trained.report;
    println!("held-out mse {:.4} after {} iterations (baseline {:.4})", r.final_eval.loss, r.iters, r.baseline);
    println!("w_hh[0][0] = {:.4}", trained.weights.w_hh[0]);
    Ok(())
}
