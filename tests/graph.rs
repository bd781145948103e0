//! `--graph`: the computation graph read back from the SVG must be the forward equations'
//! graph (every node with its label, exactly the forward dependencies as edges), and its
//! annotations must be the run's own ‖∂L/∂h_t‖ from the JSON.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bptt::graph::{ALL_STEPS_UP_TO, END_STEPS, GraphOf, GraphSpec, drawn_steps, write_spec};
use bptt::model::{Activation, LossAt, LossFn};
use common::bptt;

fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// The text content of an element, tags stripped.
fn inner_text(element: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in element.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

#[derive(Debug)]
struct Node {
    label: String,
    kind: String,
    text: String,
    fill: String,
    grad_norm: Option<f64>,
}

#[derive(Debug)]
struct Edge {
    cut: bool,
    grad_norm: Option<f64>,
    width: f64,
    elided: Option<usize>,
}

/// The `<g class="...">` groups of an SVG, each as its opening tag and its whole text.
fn groups<'a>(svg: &'a str, class: &str) -> Vec<(&'a str, &'a str)> {
    let open = format!("<g class=\"{class}\"");
    svg.match_indices(&open)
        .map(|(at, _)| {
            let rest = &svg[at..];
            let tag = &rest[..rest.find('>').expect("closed tag") + 1];
            (tag, &rest[..rest.find("</g>").expect("closed group")])
        })
        .collect()
}

fn read_nodes(svg: &str) -> BTreeMap<String, Node> {
    groups(svg, "node")
        .into_iter()
        .map(|(tag, body)| {
            let id = attr(tag, "data-id").expect("node id").to_string();
            let rect = &body[body.find("<rect").expect("node box")..];
            let text = &body[body.find("<text").expect("node text")..];
            let node = Node {
                label: attr(tag, "data-label").expect("label").to_string(),
                kind: attr(tag, "data-kind").expect("kind").to_string(),
                text: inner_text(text),
                fill: attr(rect, "fill").expect("fill").to_string(),
                grad_norm: attr(tag, "data-grad-norm").map(|v| v.parse().expect("a number")),
            };
            (id, node)
        })
        .collect()
}

fn read_edges(svg: &str) -> BTreeMap<(String, String), Edge> {
    let mut out = BTreeMap::new();
    for (tag, body) in groups(svg, "edge") {
        let key = (attr(tag, "data-from").unwrap().to_string(), attr(tag, "data-to").unwrap().to_string());
        let line = &body[body.find("<polyline").expect("edge line")..];
        let edge = Edge {
            cut: attr(tag, "data-gradient-cut") == Some("true"),
            grad_norm: attr(tag, "data-grad-norm").map(|v| v.parse().expect("a number")),
            width: attr(line, "stroke-width").unwrap().parse().unwrap(),
            elided: attr(tag, "data-elided-steps").map(|v| v.parse().unwrap()),
        };
        assert!(out.insert(key.clone(), edge).is_none(), "edge {key:?} drawn twice");
    }
    out
}

/// The forward equations' dependencies, written out from docs/model.md for the steps
/// `steps` (consecutive ones joined h_{t−1} → h_t; `prev` of the first is h_0).
fn forward_dependencies(steps: &[usize], bias: bool, scored: impl Fn(usize) -> bool) -> BTreeSet<(String, String)> {
    let mut e = BTreeSet::new();
    let mut add = |a: String, b: String| assert!(e.insert((a, b)));
    let mut prev = 0;
    for &t in steps {
        let (h, o) = (format!("h_{t}"), format!("o_{t}"));
        // a_t = x_t·w_hxᵀ + h_{t−1}·w_hhᵀ (+ b_h), h_t = φ(a_t)
        add(format!("x_{t}"), h.clone());
        add(format!("h_{prev}"), h.clone());
        add("W_hx".into(), h.clone());
        add("W_hh".into(), h.clone());
        // o_t = h_t·w_qhᵀ (+ b_q)
        add(h.clone(), o.clone());
        add("W_qh".into(), o.clone());
        if bias {
            add("b_h".into(), h.clone());
            add("b_q".into(), o.clone());
        }
        // ℓ_t = ℓ(o_t, y_t), L = mean of the ℓ_t
        if scored(t) {
            add(o.clone(), format!("l_{t}"));
            add(format!("y_{t}"), format!("l_{t}"));
            add(format!("l_{t}"), "L".into());
        }
        prev = t;
    }
    e
}

/// The numbers of the JSON array `key` as printed, parsed with Rust's correctly rounded
/// `f64::from_str` (serde_json's default float parser may land one ulp off, and the graph's
/// values must equal the JSON's exactly).
fn json_array(json: &str, key: &str) -> Vec<f64> {
    let start = json.find(&format!("\"{key}\": [")).unwrap_or_else(|| panic!("no {key}")) + key.len() + 5;
    let end = start + json[start..].find(']').expect("closed array");
    json[start..end].split(',').map(|x| x.trim().parse().expect("a number")).collect()
}

/// The number printed after `"key": ` (the first occurrence).
fn json_number(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("no {key}")) + key.len() + 4;
    let end = start + json[start..].find([',', '\n', '}']).expect("a number");
    json[start..end].trim().parse().expect("a number")
}

#[test]
fn a_three_step_graph_is_the_forward_equations_annotated_with_the_json_norms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.svg");
    let (code, stdout, stderr) = bptt(&[
        "--compute",
        "cpu-ref",
        "--hidden",
        "8",
        "--steps",
        "3",
        "--input",
        "3",
        "--output",
        "2",
        "--random-h0",
        "--spectral-radius",
        "1.5",
        "--json",
        "--graph",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let nodes = read_nodes(&svg);
    let edges = read_edges(&svg);

    // Every node, with its label as data and as the visible text (base, then subscript).
    let mut want: Vec<(String, String, &str)> = Vec::new();
    for t in 1..=3 {
        want.push((format!("x_{t}"), format!("x_{t}"), "input"));
        want.push((format!("o_{t}"), format!("o_{t}"), "output"));
        want.push((format!("l_{t}"), format!("ℓ_{t}"), "loss-term"));
        want.push((format!("y_{t}"), format!("y_{t}"), "target"));
    }
    for t in 0..=3 {
        want.push((format!("h_{t}"), format!("h_{t}"), "hidden"));
    }
    for p in ["W_hx", "W_hh", "W_qh"] {
        want.push((p.into(), p.into(), "parameter"));
    }
    want.push(("L".into(), "L".into(), "loss"));
    assert_eq!(nodes.len(), want.len(), "{:?}", nodes.keys());
    for (id, label, kind) in &want {
        let n = nodes.get(id).unwrap_or_else(|| panic!("no node {id}"));
        assert_eq!((&n.label, n.kind.as_str()), (label, *kind), "{id}");
        assert_eq!(n.text, label.replace('_', ""), "{id}'s visible label");
    }

    // Exactly the forward dependencies.
    let got: BTreeSet<_> = edges.keys().cloned().collect();
    assert_eq!(got, forward_dependencies(&[1, 2, 3], false, |_| true));

    // The annotation is the JSON's ‖∂L/∂h_t‖ (and ‖∂L/∂h_0‖), exactly, on the node h_t and on
    // the edge h_{t−1} → h_t; no other node or edge carries one.
    let g = json_array(&stdout, "grad_h_norm");
    assert_eq!(g.len(), v["grad_h_norm"].as_array().unwrap().len());
    assert_eq!(nodes["h_0"].grad_norm, Some(json_number(&stdout, "grad_h0")));
    for t in 1..=3 {
        assert_eq!(nodes[&format!("h_{t}")].grad_norm, Some(g[t - 1]), "h_{t}");
        assert_eq!(edges[&(format!("h_{}", t - 1), format!("h_{t}"))].grad_norm, Some(g[t - 1]), "edge into h_{t}");
    }
    assert_eq!(nodes.values().filter(|n| n.grad_norm.is_some()).count(), 4);
    assert_eq!(edges.values().filter(|e| e.grad_norm.is_some()).count(), 3);

    // The log scale: the edge width grows with the norm, the largest norm gets the top of the
    // colour map and the smallest its bottom.
    let mut chain: Vec<(f64, f64)> = edges.values().filter_map(|e| e.grad_norm.map(|g| (g, e.width))).collect();
    chain.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(chain.windows(2).all(|w| w[0].1 < w[1].1), "{chain:?}");
    // Along the colour map (viridis) the green channel only grows: so must it with the norm.
    let mut hs: Vec<(f64, u8)> = (0..=3)
        .map(|t| &nodes[&format!("h_{t}")])
        .map(|n| (n.grad_norm.unwrap(), u8::from_str_radix(&n.fill[3..5], 16).unwrap()))
        .collect();
    hs.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(hs.windows(2).all(|w| w[0].1 < w[1].1), "{hs:?}");
    // The printed values (3 significant digits) are there too.
    for x in g {
        assert!(svg.contains(&format!(">{}<", bptt::format::significant(x, 3))), "{x}");
    }
}

/// `--graph-of reach` colours the chain by the reach ‖∂L_T/∂h_t‖ (the JSON's `reach`), and the
/// footer says which quantity the colours show and how to read it: with a loss at every step,
/// ‖∂L/∂h_t‖ (the default) does not darken towards t = 1 while the reach does, and the footer
/// says so instead of calling the bright chain "no vanishing".
#[test]
fn the_graph_of_the_reach_shows_what_the_report_calls_vanishing() {
    let dir = tempfile::tempdir().unwrap();
    let (default, reach) = (dir.path().join("g.svg"), dir.path().join("reach.svg"));
    let common = ["--compute", "cpu-ref", "--hidden", "16", "--steps", "12", "--spectral-radius", "0.6", "--json"];
    let (code, stdout, stderr) = bptt(&[&common[..], &["--graph", default.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    let (code, again, stderr) =
        bptt(&[&common[..], &["--graph", reach.to_str().unwrap(), "--graph-of", "reach"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json_array(&stdout, "reach"), json_array(&again, "reach"));
    let (g, r) = (json_array(&stdout, "grad_h_norm"), json_array(&stdout, "reach"));
    let (gsvg, rsvg) = (std::fs::read_to_string(&default).unwrap(), std::fs::read_to_string(&reach).unwrap());
    let (gn, rn) = (read_nodes(&gsvg), read_nodes(&rsvg));
    for t in [1, 2, 3, 10, 11, 12] {
        assert_eq!(gn[&format!("h_{t}")].grad_norm, Some(g[t - 1]), "t = {t}");
        assert_eq!(rn[&format!("h_{t}")].grad_norm, Some(r[t - 1]), "t = {t}");
    }
    // The reach vanishes going back (ρ = 0.6) and the report says so; ‖∂L/∂h_t‖ does not.
    assert!(r[0] < 1e-2 * r[11], "{r:?}");
    assert!(g[0] > 0.1 * g[11], "{g:?}");
    assert!(stdout.contains("\"reach_factor\": 0."), "{stdout}");
    let text = |svg: &str| -> String { inner_text(svg) };
    let (gt, rt) = (text(&gsvg), text(&rsvg));
    assert!(gt.contains("Colours: ‖∂L/∂ht‖, the gradient of the whole loss L"), "{gt}");
    assert!(gt.contains("this chain does not show vanishing; the graph of the reach"), "{gt}");
    assert!(!gt.contains("A chain that darkens"), "{gt}");
    assert!(rt.contains("Colours: the reach ‖∂LT/∂ht‖, the gradient of the last step's loss alone"), "{rt}");
    assert!(rt.contains("A chain that darkens and thins towards t = 1 shows vanishing gradients"), "{rt}");
    // Under --loss-at last the reach is the default (and the same numbers as ‖∂L/∂h_t‖).
    let last = dir.path().join("last.svg");
    let (code, _, stderr) = bptt(&[&common[..], &["--loss-at", "last", "--graph", last.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(text(&std::fs::read_to_string(&last).unwrap()).contains("Colours: the reach"));
    // --graph-of needs --graph.
    let (code, _, stderr) = bptt(&[&common[..], &["--graph-of", "reach"]].concat());
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn biases_and_a_last_step_loss_change_the_graph_as_the_equations_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.svg");
    let (code, stdout, stderr) = bptt(&[
        "--compute",
        "cpu-ref",
        "--hidden",
        "6",
        "--steps",
        "4",
        "--bias",
        "--loss-at",
        "last",
        "--loss",
        "xent",
        "--json",
        "--graph",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let nodes = read_nodes(&svg);
    let got: BTreeSet<_> = read_edges(&svg).keys().cloned().collect();
    assert_eq!(got, forward_dependencies(&[1, 2, 3, 4], true, |t| t == 4));
    // Only the scored step has a loss term and a target; the biases are parameters.
    assert!(nodes.contains_key("l_4") && !nodes.contains_key("l_3") && !nodes.contains_key("y_1"));
    assert_eq!(nodes["b_h"].kind, "parameter");
    let g = json_array(&stdout, "grad_h_norm");
    assert_eq!(g.len(), v["grad_h_norm"].as_array().unwrap().len());
    for t in 1..=4 {
        assert_eq!(nodes[&format!("h_{t}")].grad_norm, Some(g[t - 1]));
    }
}

#[test]
fn a_long_sequence_shows_its_ends_with_an_ellipsis() {
    assert_eq!(drawn_steps(ALL_STEPS_UP_TO), ((1..=ALL_STEPS_UP_TO).collect(), false));
    assert_eq!(drawn_steps(9), (vec![1, 2, 3, 7, 8, 9], true));
    assert_eq!(END_STEPS, 3);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.svg");
    let args = ["--compute", "cpu-ref", "--hidden", "8", "--steps", "20", "--input", "2", "--output", "2", "--json"];
    let (code, stdout, stderr) = bptt(&[&args[..], &["--graph", path.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let nodes = read_nodes(&svg);
    let edges = read_edges(&svg);
    let steps = [1, 2, 3, 18, 19, 20];
    let hidden: BTreeSet<String> = nodes.iter().filter(|(_, n)| n.kind == "hidden").map(|(id, _)| id.clone()).collect();
    let want: BTreeSet<String> = std::iter::once(0).chain(steps).map(|t| format!("h_{t}")).collect();
    assert_eq!(hidden, want);
    // The drawn steps' dependencies, the chain running through the ellipsis from h_3 to h_18.
    let got: BTreeSet<_> = edges.keys().cloned().collect();
    assert_eq!(got, forward_dependencies(&steps, false, |_| true));
    let through = &edges[&("h_3".to_string(), "h_18".to_string())];
    assert_eq!(through.elided, Some(14));
    assert_eq!(edges.values().filter(|e| e.elided.is_some()).count(), 1);
    let g = json_array(&stdout, "grad_h_norm");
    assert_eq!(g.len(), v["grad_h_norm"].as_array().unwrap().len());
    for t in steps {
        assert_eq!(nodes[&format!("h_{t}")].grad_norm, Some(g[t - 1]));
    }
    assert!(svg.contains("14 steps"));
}

fn spec() -> GraphSpec {
    GraphSpec {
        steps: 3,
        loss_at: LossAt::All,
        bias: false,
        activation: Activation::Tanh,
        loss_fn: LossFn::Mse,
        quantity: GraphOf::GradHNorm,
        values: vec![1e-3, f64::NAN, 2.0],
        h0_value: Some(0.0),
        variant: vec!["truncated 2 steps back from each loss term".into()],
        carry: None,
        cut_reason: None,
    }
}

#[test]
fn dot_and_png_draw_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (svg_path, dot_path, png_path) = (dir.path().join("g.svg"), dir.path().join("g.dot"), dir.path().join("g.PNG"));
    for p in [&svg_path, &dot_path, &png_path] {
        write_spec(p, &spec()).expect("write");
    }
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    let dot_edges: BTreeSet<(String, String)> = dot
        .lines()
        .filter_map(|l| {
            let (a, rest) = l.trim().strip_prefix('"')?.split_once("\" -> \"")?;
            Some((a.to_string(), rest[..rest.find('"')?].to_string()))
        })
        .collect();
    let svg_edges: BTreeSet<_> = read_edges(&svg).keys().cloned().collect();
    assert_eq!(dot_edges, svg_edges);
    assert!(dot.starts_with("// Unrolled computation graph") && dot.contains("digraph bptt {"));

    // Zero and NaN norms cannot sit on the log scale: grey, and still labelled (NaN as an
    // overflow, which the legend explains).
    let nodes = read_nodes(&svg);
    assert!(nodes["h_2"].grad_norm.unwrap().is_nan());
    assert_eq!(nodes["h_2"].fill, "#bebebe");
    assert_eq!(nodes["h_0"].fill, "#bebebe");
    // 1e-3 to 2 spans more than two decades: the ends of the colour map.
    assert_eq!(nodes["h_1"].fill, "#440154");
    assert_eq!(nodes["h_3"].fill, "#dcd728");
    assert!(svg.contains(">overflow<") && !svg.contains(">NaN<") && svg.contains("truncated 2 steps back"));
    assert!(svg.contains(" labelled &quot;overflow&quot; has no finite"), "the legend's line");

    // The PNG is the same picture at 1.5×, with h_3's colour (the top of the scale) in it.
    let image = image::open(&png_path).expect("a PNG").to_rgb8();
    let width: f64 = attr(&svg, "width").unwrap().parse().unwrap();
    assert_eq!(image.width(), (width * 1.5).ceil() as u32);
    let top = image.pixels().filter(|p| p.0 == [0xdc, 0xd7, 0x28]).count();
    assert!(top > 1000, "{top} pixels of h_3's fill");
}

#[test]
fn other_extensions_are_refused_in_one_line() {
    for bad in [&["--graph", "g.pdf"][..], &["--graph", "g"], &["--graph", "g.svg", "--sweep-radius", "0.9,1.1"]] {
        let (code, stdout, stderr) =
            bptt(&[&["--compute", "cpu-ref", "--hidden", "4", "--steps", "3"][..], bad].concat());
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert!(stdout.is_empty());
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
        assert_eq!(lines.len(), 1, "{bad:?}: {stderr}");
    }
    let (_, _, stderr) = bptt(&["--graph", "g.pdf"]);
    assert!(stderr.contains(".svg, .png or .dot"), "{stderr}");
}

#[test]
fn segment_boundaries_and_random_cuts_are_drawn_cut() {
    use bptt::variant::truncation::random_carry_scales;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.svg");
    let shape = ["--compute", "cpu-ref", "--hidden", "6", "--steps", "7", "--input", "2", "--output", "2", "--json"];
    // (extra arguments, the t of each cut edge h_t → h_{t+1})
    let random: Vec<usize> = random_carry_scales(7, 0.4, 5)
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == 0.0)
        .map(|(t, _)| t)
        .collect();
    assert!(!random.is_empty() && random.len() < 7, "seed 5 should cut some edges and keep some: {random:?}");
    for (extra, cuts) in [
        (&["--segments", "3"][..], vec![3, 5]),
        (&["--truncate", "random:0.4", "--truncate-seed", "5"], random),
        (&[], vec![]),
    ] {
        let (code, stdout, stderr) = bptt(&[&shape[..], extra, &["--graph", path.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        let svg = std::fs::read_to_string(&path).unwrap();
        let edges = read_edges(&svg);
        let g = json_array(&stdout, "grad_h_norm");
        for t in 1..=7 {
            let e = &edges[&(format!("h_{}", t - 1), format!("h_{t}"))];
            let want_cut = cuts.contains(&(t - 1));
            assert_eq!(e.cut, want_cut, "{extra:?}: edge into h_{t}");
            // A cut edge carries no gradient back, so it shows none; the others show ‖∂L/∂h_t‖.
            assert_eq!(e.grad_norm, if want_cut { None } else { Some(g[t - 1]) }, "{extra:?}: edge into h_{t}");
        }
        assert_eq!(edges.values().filter(|e| e.cut).count(), cuts.len());
        assert_eq!(svg.contains("no gradient flows back along it"), !cuts.is_empty(), "{extra:?}: the legend");
        // The forward graph itself is unchanged by the cuts.
        let got: BTreeSet<_> = edges.keys().cloned().collect();
        assert_eq!(got, forward_dependencies(&[1, 2, 3, 4, 5, 6, 7], false, |_| true));
    }
}
