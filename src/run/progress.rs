//! A spinner on stderr for runs long enough to wonder about: only on a terminal, never with
//! `--json`.

pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(long: bool, json: bool) -> Self {
        use std::io::IsTerminal;
        let show = long && !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Progress(show.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        }))
    }

    pub fn say(&self, msg: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
