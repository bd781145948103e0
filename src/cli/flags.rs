//! The library's messages name the fields of its configs in backticks (`steps`,
//! `spectral_radius`, `max_memory`); the command line names its flags. `as_flags` rewrites one
//! into the other, so a message reads `--steps` here and `steps` from Rust or Python.

/// Fields whose flag is not the field's name with dashes, and settings that come from the
/// environment.
const RENAMED: &[(&str, &str)] = &[
    ("device", "--compute"),
    ("keep_states", "--save-states"),
    ("max_memory", "BPTT_MAX_MEMORY"),
    ("font", "BPTT_PLOT_FONT"),
    ("backend_list", "WGPU_BACKEND"),
];

/// Every field name the library may put in backticks, with the flag it is on the command
/// line: the flags of both commands (a field `spectral_radius` is `--spectral-radius`).
const FIELDS: &[&str] = &[
    "hidden",
    "steps",
    "batch",
    "input",
    "output",
    "activation",
    "loss",
    "loss_at",
    "bias",
    "seed",
    "spectral_radius",
    "random_h0",
    "compute",
    "schedule",
    "tolerance",
    "repeat",
    "cpu_peak",
    "backend",
    "adapter",
    "software",
    "truncate",
    "truncate_seed",
    "segments",
    "clip",
    "memory",
    "checkpoints",
    "plot",
    "graph",
    "sweep_radius",
    "load",
    "save",
    "save_states",
    "save_problem",
    "graph_of",
    "task",
    "text",
    "iters",
    "init_recurrent",
    "init_scale",
    "optim",
    "lr",
    "momentum",
    "log_every",
    "eval_every",
    "eval_size",
    "partition",
    "sample",
    "prompt",
    "init_from",
    "save_model",
];

/// `msg` with each backticked field name replaced by its flag: "`steps` must be ≥ 2" →
/// "--steps must be ≥ 2". A backticked word that is no field (a tensor's name, a value) is
/// left as it is, and so is one right after "tensor " (`loss` the tensor is not `--loss`).
pub fn as_flags(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find('`') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let after = &after[1..];
        let Some(close) = after.find('`') else {
            out.push('`');
            rest = after;
            continue;
        };
        let word = &after[..close];
        match flag(word).filter(|_| !out.ends_with("tensor ")) {
            Some(f) => out.push_str(&f),
            None => {
                out.push('`');
                out.push_str(word);
                out.push('`');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn flag(word: &str) -> Option<String> {
    if let Some((_, f)) = RENAMED.iter().find(|(field, _)| *field == word) {
        return Some(f.to_string());
    }
    FIELDS.contains(&word).then(|| format!("--{}", word.replace('_', "-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_flags_and_other_words_stay() {
        assert_eq!(as_flags("`steps` must be ≥ 2"), "--steps must be ≥ 2");
        assert_eq!(as_flags("lower `spectral_radius` or `steps`"), "lower --spectral-radius or --steps");
        assert_eq!(
            as_flags("more than the 1 GiB available (`max_memory`)"),
            "more than the 1 GiB available (BPTT_MAX_MEMORY)"
        );
        assert_eq!(as_flags("`truncate` with `device` cpu"), "--truncate with --compute cpu");
        assert_eq!(as_flags("tensor `loss`: missing"), "tensor `loss`: missing");
        assert_eq!(as_flags("tensor `w_hh`: 3 values"), "tensor `w_hh`: 3 values");
        assert_eq!(as_flags("unknown `w_qh` and a lone ` tick"), "unknown `w_qh` and a lone ` tick");
        assert_eq!(as_flags("no ticks"), "no ticks");
    }

    #[test]
    fn every_flag_of_both_commands_is_a_known_field() {
        use clap::CommandFactory;
        for cmd in [crate::cli::args::Args::command(), crate::cli::train_args::TrainArgs::command()] {
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version", "json", "verbose", "list-adapters"].contains(&long) {
                    continue;
                }
                assert_eq!(flag(&long.replace('-', "_")).as_deref(), Some(format!("--{long}").as_str()), "{long}");
            }
        }
    }
}
