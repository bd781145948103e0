//! The terminal's side of `bptt::Progress`: a spinner on stderr for check runs long enough to
//! wonder about, and a bar for training. Only on a terminal, never with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner naming the stage, or nothing.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn new(long: bool, json: bool) -> Self {
        let show = long && !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Spinner(show.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        }))
    }
}

impl bptt::Progress for Spinner {
    fn stage(&self, what: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(what.to_string());
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Training's bar: iterations done, the latest training metric, the time left.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new(iters: usize, json: bool) -> Self {
        let show = !json && std::io::stderr().is_terminal();
        Bar(show.then(|| {
            let bar = ProgressBar::new(iters as u64);
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, {msg} ({eta} left)") {
                bar.set_style(style);
            }
            bar
        }))
    }
}

impl bptt::Progress for Bar {
    fn iteration(&self, done: usize, _total: usize, metric: f64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done as u64);
            bar.set_message(format!("training loss {}", bptt::format::significant(metric, 4)));
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
