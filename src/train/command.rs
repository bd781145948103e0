//! `bptt train` as one library call: the progress bar, the training, then the extras the flags
//! ask for (sample, model file, plot), each only after a run that finished with finite losses.

use std::io::IsTerminal;

use super::args::TrainArgs;
use super::report::TrainReport;
use super::setup::TaskData;
use super::tasks::rng;
use crate::error::Result;

/// The stream of --seed that --sample draws from.
const SAMPLE_STREAM: u64 = 11;

pub fn run(a: &TrainArgs) -> Result<TrainReport> {
    // A missing font or an unwritable output would otherwise only show after the training.
    for path in a.save_model.iter().chain(&a.plot) {
        crate::io::check_output_path(path)?;
    }
    if let Some(path) = &a.plot {
        crate::plot::check_font(path)?;
    }
    let show = !a.json && std::io::stderr().is_terminal();
    let bar = show.then(|| {
        let bar = indicatif::ProgressBar::new(a.iters as u64);
        let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, {msg} ({eta} left)")
            .expect("a valid template");
        bar.set_style(style);
        bar
    });
    let trained = super::train(a, |iter, metric| {
        if let Some(bar) = &bar {
            bar.set_position(iter as u64);
            bar.set_message(format!("training loss {metric:.4}"));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (mut report, w, setup) = trained?;
    if let (Some(n), TaskData::Text { corpus, .. }) = (a.sample, &setup.data) {
        let prompt = match &a.prompt {
            Some(p) => corpus.encode(p)?,
            None => vec![corpus.train[0]],
        };
        let text = super::sample::sample(
            &w,
            setup.step.activation,
            corpus,
            &prompt,
            n as usize,
            &mut rng(a.seed, SAMPLE_STREAM),
        );
        report.sample = Some(format!("{}{text}", a.prompt.clone().unwrap_or_default()));
    }
    if let Some(path) = &a.save_model {
        let s = setup.step.shape;
        let t = w.tensors();
        crate::io::save_model(
            path,
            [t[0].1, t[1].1, t[2].1, t[3].1, t[4].1],
            (s.input, s.hidden, s.output),
            &setup.model_metadata(),
        )?;
    }
    if let Some(path) = &a.plot {
        super::plot::plot_curve(path, &report)?;
    }
    Ok(report)
}
