//! `bptt train` as library calls: `run` checks the outputs, shows the progress bar, trains and
//! draws the sample; `Trained::write_files` then writes the plot and the model file, after the
//! caller has printed the report, so a file that cannot be written never costs the report (and
//! only a run that finished with finite losses gets this far).

use std::io::IsTerminal;

use super::args::TrainArgs;
use super::report::TrainReport;
use super::setup::{Setup, TaskData};
use super::tasks::rng;
use super::weights::Weights;
use crate::error::{Result, one_line};

/// The stream of --seed that --sample draws from.
const SAMPLE_STREAM: u64 = 11;

/// A finished training: its report, and what `write_files` still writes.
pub struct Trained {
    pub report: TrainReport,
    weights: Weights,
    setup: Setup,
}

pub fn run(a: &TrainArgs) -> Result<Trained> {
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
    Ok(Trained { report, weights: w, setup })
}

impl Trained {
    /// Writes the plot, then the model file (last, as the check's `--save`). Returns a line per
    /// file written.
    pub fn write_files(&self, a: &TrainArgs) -> Result<Vec<String>> {
        let mut written = Vec::new();
        if let Some(path) = &a.plot {
            super::plot::plot_curve(path, &self.report)?;
            written.push(format!("plot written to {}", one_line(&path.display().to_string())));
        }
        if let Some(path) = &a.save_model {
            let s = self.setup.step.shape;
            let t = self.weights.tensors();
            crate::io::save_model(
                path,
                [t[0].1, t[1].1, t[2].1, t[3].1, t[4].1],
                (s.input, s.hidden, s.output),
                &self.setup.model_metadata(),
            )?;
            written.push(format!("model saved to {}", one_line(&path.display().to_string())));
        }
        Ok(written)
    }
}
