//! The library's layering (docs/design.md, "Layers"): the model → the engines → files → the
//! procedures → the figures, each module using only the modules of its own layer or below; no
//! import cycle among the library's files; and the command line (clap, indicatif, env_logger,
//! the environment, `src/cli/`) outside the library. Read from the source, `use crate::…` line
//! by line, so a change that breaks the layering fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, layer by layer (lower first).
const LAYERS: &[&[&str]] = &[
    &["error", "format", "model", "linalg", "flops", "problem", "progress", "checkpoint"],
    &["cpu", "gpu", "variant", "clip", "diagnostics", "memory", "api", "layer"],
    &["io"],
    &["check", "train"],
    &["plot", "graph"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library file, relative to src/ (the command line's `main.rs` and `cli/` excluded).
fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(src()).unwrap().to_path_buf());
            }
        }
    }
    let mut all = Vec::new();
    walk(&src(), &mut all);
    all.retain(|p| p != Path::new("main.rs") && !p.starts_with("cli"));
    all.sort();
    all
}

/// The file a module path names (e.g. ["gpu", "buffers"] → gpu/buffers.rs), if any.
fn module_file(path: &[&str]) -> Option<PathBuf> {
    let joined = path.join("/");
    [format!("{joined}.rs"), format!("{joined}/mod.rs")].into_iter().map(PathBuf::from).find(|f| src().join(f).exists())
}

/// The module path of a file: gpu/buffers.rs → ["gpu", "buffers"], gpu/mod.rs → ["gpu"].
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The library files `file` uses: every `crate::a::b…` and `super::…` path in its code
/// (comments left out), resolved to the deepest file that exists. A module's own submodules
/// are not counted (a parent declares and re-exports its children).
fn uses(file: &Path) -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string(src().join(file)).unwrap();
    let me = module_of(file);
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (start, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
            let is_super = code[start..].starts_with("super::");
            if start > 0 && code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::` in a macro, or part of a longer name
            }
            let rest = &code[start + "crate::".len()..]; // as long as "super::"
            let names: Vec<&str> = rest
                .split("::")
                .map(|seg| seg.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or(""))
                .take_while(|seg| !seg.is_empty() && seg.chars().next().is_some_and(|c| c.is_lowercase()))
                .collect();
            // `super` of a::b (a/b.rs) and of a (a/mod.rs) alike is the module path less its last part.
            let mut base: Vec<String> = if is_super { me[..me.len().saturating_sub(1)].to_vec() } else { Vec::new() };
            base.extend(names.iter().map(|s| s.to_string()));
            let target = (1..=base.len()).rev().find_map(|n| {
                let path: Vec<&str> = base[..n].iter().map(String::as_str).collect();
                module_file(&path)
            });
            if let Some(t) = target {
                let t_mod = module_of(&t);
                if t != file && !(t_mod.len() > me.len() && t_mod.starts_with(&me)) {
                    out.insert(t);
                }
            }
        }
    }
    out
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn every_top_level_module_has_a_layer() {
    for f in library_files() {
        let m = module_of(&f);
        if let Some(top) = m.first() {
            assert!(layer_of(top).is_some(), "src/{}: module `{top}` is in no layer of LAYERS", f.display());
        }
    }
}

#[test]
fn each_module_uses_only_its_layer_or_those_below() {
    let mut wrong = Vec::new();
    for f in library_files() {
        let Some(top) = module_of(&f).first().cloned() else { continue };
        let mine = layer_of(&top).unwrap();
        for used in uses(&f) {
            let Some(other) = module_of(&used).first().cloned() else { continue };
            if layer_of(&other).unwrap() > mine {
                wrong.push(format!(
                    "src/{} (layer {mine}) uses src/{} (layer {})",
                    f.display(),
                    used.display(),
                    layer_of(&other).unwrap()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_library_files_import_each_other_without_a_cycle() {
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        library_files().into_iter().map(|f| (f.clone(), uses(&f))).collect();
    assert!(graph.len() > 60, "{} files", graph.len());
    assert!(graph.values().map(BTreeSet::len).sum::<usize>() > 100, "the import lines were not read");
    // Depth-first search with colours: grey = on the current path; a grey successor closes a cycle.
    fn visit(
        n: &PathBuf,
        g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        colour: &mut BTreeMap<PathBuf, u8>,
        path: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        colour.insert(n.clone(), 1);
        path.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match colour.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == m).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, colour, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(n.clone(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in graph.keys() {
        if colour.get(n).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(n, &graph, &mut colour, &mut Vec::new())
        {
            let shown: Vec<String> = cycle.iter().map(|p| format!("src/{}", p.display())).collect();
            panic!("import cycle: {}", shown.join(" → "));
        }
    }
}

#[test]
fn the_command_line_stays_out_of_the_library() {
    let mut found = Vec::new();
    for f in library_files() {
        let text = std::fs::read_to_string(src().join(&f)).unwrap();
        for (n, line) in text.lines().enumerate() {
            for word in ["clap", "indicatif", "env_logger", "crate::cli", "std::env::var", "env::args", "IsTerminal"] {
                let hit = line.match_indices(word).any(|(at, _)| {
                    let before = line[..at].chars().last();
                    let after = line[at + word.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push(format!("src/{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "the library mentions the command line's tools:\n{}", found.join("\n"));
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    for dep in ["clap", "indicatif", "env_logger"] {
        let line = manifest.lines().find(|l| l.starts_with(&format!("{dep} ="))).unwrap_or_else(|| panic!("{dep}"));
        assert!(line.contains("optional = true"), "{dep} must be optional (the `cli` feature): {line}");
    }
    assert!(manifest.contains("required-features = [\"cli\"]"), "the binary must require the `cli` feature");
}
