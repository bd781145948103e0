//! The safetensors file format: round trips, every kind of bad input file (each an error with
//! exit code 2 that names the tensor), metadata precedence, and atomic saves.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bptt::cpu::reference;
use bptt::io::{load_grads, load_problem, save_grads, save_problem};
use bptt::{Activation, Error, LossAt, LossFn, ProblemSpec, Shape, Targets, random_problem};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

// ---------------------------------------------------------------------------------------------
// Building files by hand, so each test can break exactly one thing.

/// A problem file's tensors and metadata before they are written.
#[derive(Clone)]
struct RawFile {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Distinct, non-trivial values, so a mix-up of tensors would show.
fn values(n: usize, salt: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + salt) * 0.731).sin()).collect()
}

const T: usize = 3;
const B: usize = 2;
const D: usize = 2;
const H: usize = 3;
const Q: usize = 4;

impl RawFile {
    /// A valid mse problem with T=3 B=2 d=2 h=3 q=4, no metadata.
    fn good() -> Self {
        let mut f = RawFile { tensors: BTreeMap::new(), metadata: HashMap::new() };
        f.set("w_hx", &[H, D], &values(H * D, 1.0));
        f.set("w_hh", &[H, H], &values(H * H, 2.0));
        f.set("w_qh", &[Q, H], &values(Q * H, 3.0));
        f.set("x", &[T, B, D], &values(T * B * D, 4.0));
        f.set("y", &[T, B, Q], &values(T * B * Q, 5.0));
        f
    }

    /// The same with labels (I64) in place of y.
    fn good_xent() -> Self {
        let mut f = Self::good();
        f.remove("y");
        f.set_labels(&[0, 1, 2, 3, 1, 0]);
        f
    }

    fn set(&mut self, name: &str, shape: &[usize], v: &[f64]) -> &mut Self {
        self.set_raw(name, Dtype::F64, shape, f64_bytes(v))
    }

    fn set_labels(&mut self, labels: &[i64]) -> &mut Self {
        let bytes = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        self.set_raw("labels", Dtype::I64, &[T, B], bytes)
    }

    fn set_raw(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> &mut Self {
        self.tensors.insert(name.to_string(), (dtype, shape.to_vec(), bytes));
        self
    }

    fn remove(&mut self, name: &str) -> &mut Self {
        self.tensors.remove(name).expect("tensor to remove");
        self
    }

    fn meta(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let views: Vec<(&str, TensorView)> = self
            .tensors
            .iter()
            .map(|(n, (dt, shape, b))| (n.as_str(), TensorView::new(*dt, shape.clone(), b).unwrap()))
            .collect();
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize(views, meta).unwrap()
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("problem.safetensors");
        std::fs::write(&path, self.bytes()).unwrap();
        path
    }

    fn load(&self, activation: Option<Activation>, loss: Option<LossFn>) -> bptt::Result<bptt::Problem> {
        let dir = tempfile::tempdir().unwrap();
        load_problem(&self.write(dir.path()), activation, loss)
    }
}

/// Loading `f` fails with exit code 2 and a message naming `tensor` and containing `expect`.
#[track_caller]
fn assert_rejected(f: &RawFile, tensor: &str, expect: &str) -> String {
    let err = f.load(None, None).expect_err("a bad file must not load");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "exit code for: {msg}");
    assert!(msg.contains(&format!("`{tensor}`")), "message should name `{tensor}`: {msg}");
    assert!(msg.contains(expect), "message should say {expect:?}: {msg}");
    msg
}

// ---------------------------------------------------------------------------------------------
// Round trips.

fn spec(shape: Shape) -> ProblemSpec {
    ProblemSpec::new(shape)
}

#[test]
fn save_then_load_gives_the_same_problem_and_the_same_gradients() {
    let shape = Shape::new(5, 3, 4, 6, 3).unwrap();
    let mut specs = vec![spec(shape)];
    let mut s = spec(shape);
    (s.activation, s.loss, s.bias, s.random_h0, s.seed) = (Activation::Tanh, LossFn::Xent, true, true, 7);
    specs.push(s);
    let mut s = spec(shape);
    (s.loss_at, s.bias, s.seed, s.spectral_radius) = (LossAt::Last, true, 3, Some(1.2));
    specs.push(s);

    let dir = tempfile::tempdir().unwrap();
    for (i, s) in specs.iter().enumerate() {
        let p = random_problem(s).unwrap();
        let path = dir.path().join(format!("p{i}.safetensors"));
        save_problem(&path, &p).unwrap();
        let back = load_problem(&path, None, None).unwrap();
        // The file holds the problem, not how it was drawn (the seed is not saved).
        assert_eq!(back.drawn, None);
        assert_eq!(back, bptt::Problem { drawn: None, ..p.clone() }, "spec {i}");
        // Bit-identical inputs give bit-identical results.
        assert_eq!(reference::bptt(&back), reference::bptt(&p), "spec {i}");
    }
}

#[test]
fn f32_floats_and_i32_labels_are_read_as_f64_and_u32() {
    let mut f = RawFile::good_xent();
    let w_hh: Vec<f32> = vec![0.5, -0.25, 1.5e-3, 2.0, -3.0, 0.1, 7.0, 1e-7, -0.3];
    f.set_raw("w_hh", Dtype::F32, &[H, H], w_hh.iter().flat_map(|x| x.to_le_bytes()).collect());
    let labels: [i32; 6] = [3, 2, 1, 0, 0, 3];
    f.set_raw("labels", Dtype::I32, &[T, B], labels.iter().flat_map(|x| x.to_le_bytes()).collect());
    let p = f.load(None, None).unwrap();
    let want: Vec<f64> = w_hh.iter().map(|&x| x as f64).collect();
    assert_eq!(p.params.w_hh, want);
    assert_eq!(p.targets, Targets::Xent(vec![3, 2, 1, 0, 0, 3]));
    assert_eq!(p.loss_fn(), LossFn::Xent);
    assert_eq!(p.shape, Shape::new(T, B, D, H, Q).unwrap());
    // No h0 in the file: zeros.
    assert_eq!(p.h0, vec![0.0; B * H]);
}

#[test]
fn sizes_come_from_the_tensors() {
    let p = RawFile::good().load(None, None).unwrap();
    assert_eq!(p.shape, Shape::new(T, B, D, H, Q).unwrap());
    assert_eq!(p.x, values(T * B * D, 4.0));
    assert_eq!(p.params.w_qh, values(Q * H, 3.0));
    assert_eq!(p.activation, Activation::Identity, "the default");
    assert_eq!(p.loss_fn(), LossFn::Mse, "implied by y");
    assert!(!p.has_bias());
}

// ---------------------------------------------------------------------------------------------
// Metadata and arguments.

#[test]
fn metadata_sets_the_activation_and_an_argument_overrides_nothing_it_contradicts() {
    let mut f = RawFile::good();
    f.meta("activation", "tanh").meta("loss", "mse");
    assert_eq!(f.load(None, None).unwrap().activation, Activation::Tanh);
    assert_eq!(f.load(Some(Activation::Tanh), Some(LossFn::Mse)).unwrap().activation, Activation::Tanh);
    // Without metadata, the argument applies.
    let plain = RawFile::good();
    assert_eq!(plain.load(Some(Activation::Tanh), None).unwrap().activation, Activation::Tanh);
}

#[test]
fn an_activation_argument_contradicting_the_metadata_is_an_error() {
    let mut f = RawFile::good();
    f.meta("activation", "identity");
    let err = f.load(Some(Activation::Tanh), None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("`activation` tanh contradicts the file's metadata activation=identity"), "{err}");
}

#[test]
fn a_loss_argument_contradicting_the_metadata_is_an_error() {
    let mut f = RawFile::good();
    f.meta("loss", "mse");
    let err = f.load(None, Some(LossFn::Xent)).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("`loss` xent contradicts the file's metadata loss=mse"), "{err}");
}

#[test]
fn a_loss_argument_contradicting_the_targets_is_an_error() {
    let err = RawFile::good().load(None, Some(LossFn::Xent)).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("`loss` xent") && msg.contains("`y`") && msg.contains("`labels`"), "{msg}");

    let err = RawFile::good_xent().load(None, Some(LossFn::Mse)).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("`loss` mse") && msg.contains("`labels`"), "{msg}");
}

#[test]
fn metadata_loss_contradicting_the_targets_is_an_error() {
    let mut f = RawFile::good_xent();
    f.meta("loss", "mse");
    let err = f.load(None, None).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("metadata loss=mse") && msg.contains("`labels`"), "{msg}");
}

#[test]
fn unknown_metadata_values_are_errors() {
    let mut f = RawFile::good();
    f.meta("activation", "sigmoid");
    let msg = f.load(None, None).unwrap_err().to_string();
    assert!(msg.contains("activation=sigmoid") && msg.contains("relu"), "{msg}");
    let mut f = RawFile::good();
    f.meta("loss", "hinge");
    let err = f.load(None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("loss=hinge"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Bad files: each names the tensor and what was expected.

#[test]
fn missing_w_hh_is_named() {
    let mut f = RawFile::good();
    f.remove("w_hh");
    assert_rejected(&f, "w_hh", "missing");
}

#[test]
fn missing_x_is_named() {
    let mut f = RawFile::good();
    f.remove("x");
    assert_rejected(&f, "x", "[T, B, d]");
}

#[test]
fn a_misspelt_tensor_is_not_ignored() {
    let mut f = RawFile::good();
    let w = f.tensors.remove("w_hx").unwrap();
    f.tensors.insert("w_xh".into(), w);
    assert_rejected(&f, "w_xh", "unknown tensor");
}

#[test]
fn extra_tensors_are_named() {
    let mut f = RawFile::good();
    f.set("momentum", &[2], &[1.0, 2.0]);
    f.set("c0", &[2], &[1.0, 2.0]);
    assert_rejected(&f, "c0, momentum", "unknown tensor names");
}

#[test]
fn x_of_the_wrong_rank() {
    let mut f = RawFile::good();
    f.set("x", &[T * B, D], &values(T * B * D, 4.0));
    assert_rejected(&f, "x", "expected rank 3 [T, B, d]");
}

#[test]
fn a_scalar_where_a_matrix_belongs() {
    let mut f = RawFile::good();
    f.set("w_qh", &[], &[1.0]);
    assert_rejected(&f, "w_qh", "expected rank 2 [q, h]");
}

#[test]
fn w_hh_not_square() {
    let mut f = RawFile::good();
    f.set("w_hh", &[H, H + 1], &values(H * (H + 1), 2.0));
    assert_rejected(&f, "w_hh", "expected shape [h, h] = [3, 3], got [3, 4]");
}

#[test]
fn w_qh_with_another_hidden_size() {
    let mut f = RawFile::good();
    f.set("w_qh", &[Q, H + 2], &values(Q * (H + 2), 3.0));
    assert_rejected(&f, "w_qh", "h = 3 from `w_hx`");
}

#[test]
fn x_with_another_input_size() {
    let mut f = RawFile::good();
    f.set("x", &[T, B, D + 1], &values(T * B * (D + 1), 4.0));
    assert_rejected(&f, "x", "d = 2 from `w_hx`");
}

#[test]
fn y_with_another_output_size() {
    let mut f = RawFile::good();
    f.set("y", &[T, B, Q - 1], &values(T * B * (Q - 1), 5.0));
    assert_rejected(&f, "y", "q = 4 from `w_qh`");
}

#[test]
fn y_with_another_number_of_steps() {
    let mut f = RawFile::good();
    f.set("y", &[T + 1, B, Q], &values((T + 1) * B * Q, 5.0));
    assert_rejected(&f, "y", "T = 3 from `x`");
}

#[test]
fn h0_with_another_batch() {
    let mut f = RawFile::good();
    f.set("h0", &[B + 1, H], &values((B + 1) * H, 6.0));
    assert_rejected(&f, "h0", "expected shape [B, h] = [2, 3], got [3, 3]");
}

#[test]
fn labels_with_another_batch() {
    let mut f = RawFile::good_xent();
    f.set_raw("labels", Dtype::I64, &[T, B + 1], vec![0; 8 * T * (B + 1)]);
    assert_rejected(&f, "labels", "B = 2 from `x`");
}

#[test]
fn b_h_of_the_wrong_size() {
    let mut f = RawFile::good();
    f.set("b_h", &[H + 1], &values(H + 1, 7.0));
    f.set("b_q", &[Q], &values(Q, 8.0));
    assert_rejected(&f, "b_h", "expected shape [h] = [3]");
}

#[test]
fn b_h_without_b_q() {
    let mut f = RawFile::good();
    f.set("b_h", &[H], &values(H, 7.0));
    assert_rejected(&f, "b_q", "biases come as a pair");
}

#[test]
fn b_q_without_b_h() {
    let mut f = RawFile::good();
    f.set("b_q", &[Q], &values(Q, 8.0));
    assert_rejected(&f, "b_h", "biases come as a pair");
}

#[test]
fn a_zero_size() {
    let mut f = RawFile::good();
    f.set("x", &[0, B, D], &[]);
    assert_rejected(&f, "x", "T = 0");
}

#[test]
fn integer_weights_are_rejected() {
    let mut f = RawFile::good();
    f.set_raw("w_hx", Dtype::I32, &[H, D], vec![0; 4 * H * D]);
    assert_rejected(&f, "w_hx", "dtype I32 is not supported; expected F32 or F64");
}

#[test]
fn half_precision_targets_are_rejected() {
    let mut f = RawFile::good();
    f.set_raw("y", Dtype::F16, &[T, B, Q], vec![0; 2 * T * B * Q]);
    assert_rejected(&f, "y", "dtype F16");
}

#[test]
fn float_labels_are_rejected() {
    let mut f = RawFile::good_xent();
    f.set_raw("labels", Dtype::F64, &[T, B], f64_bytes(&[0.0; T * B]));
    assert_rejected(&f, "labels", "expected I32 or I64");
}

#[test]
fn a_label_out_of_range() {
    let mut f = RawFile::good_xent();
    f.set_labels(&[0, 1, 2, 3, 4, 0]);
    assert_rejected(&f, "labels", "label 4 at [2, 0] is out of range [0, 4)");
}

#[test]
fn a_negative_label() {
    let mut f = RawFile::good_xent();
    f.set_labels(&[0, 1, -1, 3, 1, 0]);
    assert_rejected(&f, "labels", "label -1 at [1, 0] is negative");
}

#[test]
fn a_nan_weight() {
    let mut f = RawFile::good();
    let mut w = values(H * H, 2.0);
    w[4] = f64::NAN;
    f.set("w_hh", &[H, H], &w);
    assert_rejected(&f, "w_hh", "NaN or Inf");
}

#[test]
fn an_infinite_input() {
    let mut f = RawFile::good();
    let mut x = values(T * B * D, 4.0);
    x[0] = f64::NEG_INFINITY;
    f.set("x", &[T, B, D], &x);
    assert_rejected(&f, "x", "NaN or Inf");
}

#[test]
fn an_infinite_f32_h0() {
    let mut f = RawFile::good();
    let mut h0 = [0.0f32; B * H];
    h0[1] = f32::INFINITY;
    f.set_raw("h0", Dtype::F32, &[B, H], h0.iter().flat_map(|x| x.to_le_bytes()).collect());
    assert_rejected(&f, "h0", "NaN or Inf");
}

#[test]
fn both_y_and_labels() {
    let mut f = RawFile::good();
    f.set_labels(&[0; T * B]);
    let err = f.load(None, None).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("both `y`") && msg.contains("`labels`"), "{msg}");
}

#[test]
fn neither_y_nor_labels() {
    let mut f = RawFile::good();
    f.remove("y");
    let err = f.load(None, None).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("`y` [T, B, q]") && msg.contains("`labels` [T, B]"), "{msg}");
}

#[test]
fn a_truncated_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = RawFile::good().bytes();
    let path = dir.path().join("cut.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let err = load_problem(&path, None, None).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("cut.safetensors") && msg.contains("truncated or malformed"), "{msg}");
    // Cut inside the header too.
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert_eq!(load_problem(&path, None, None).unwrap_err().exit_code(), 2);
}

#[test]
fn a_file_that_is_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "w_hx = [[1, 2], [3, 4]]\n").unwrap();
    let err = load_problem(&path, None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("notes.txt"), "{err}");
}

#[test]
fn a_missing_file_is_a_user_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.safetensors");
    let err = load_problem(&path, None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("nowhere.safetensors"), "{err}");
}

#[test]
fn an_error_about_a_tensor_also_names_the_file() {
    let mut f = RawFile::good();
    f.remove("w_hh");
    let err = f.load(None, None).unwrap_err();
    assert!(matches!(&err, Error::Tensor { tensor, .. } if tensor == "w_hh"), "{err:?}");
    assert!(err.to_string().contains("problem.safetensors"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Results files and atomic saves.

fn some_result(bias: bool) -> (Shape, bptt::BpttResult) {
    let shape = Shape::new(4, 2, 3, 5, 2).unwrap();
    let mut s = ProblemSpec::new(shape);
    (s.bias, s.seed) = (bias, 11);
    (shape, reference::bptt(&random_problem(&s).unwrap()))
}

fn f32_rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn save_grads_writes_f32_results_and_metadata_that_load_back() {
    let (shape, g) = some_result(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let meta = BTreeMap::from([
        ("adapter".to_string(), "cpu reference".to_string()),
        ("command".to_string(), "bptt --seed 11".to_string()),
    ]);
    save_grads(&path, &g, &shape, true, &meta).unwrap();
    let back = load_grads(&path).unwrap();
    assert_eq!(back.shape, shape);
    assert_eq!(back.metadata, meta);
    let gb = &back.grads;
    assert_eq!(gb.loss, g.loss as f32 as f64);
    for ((name, got), (_, want)) in gb.tensors().iter().zip(g.tensors()) {
        assert_eq!(*got, f32_rounded(want).as_slice(), "{name}");
    }
    assert_eq!(gb.tensors().len(), 8, "loss, 5 gradients with biases, grad_h0, grad_h_norm");
    assert_eq!(gb.h, f32_rounded(&g.h));
    assert_eq!(gb.o, f32_rounded(&g.o));
}

#[test]
fn save_grads_without_states_or_biases() {
    let (shape, g) = some_result(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap();
    let back = load_grads(&path).unwrap().grads;
    assert!(back.h.is_empty() && back.o.is_empty());
    assert_eq!(back.grad_b_h, None);
    assert_eq!(back.grad_w_hh, f32_rounded(&g.grad_w_hh));
}

#[test]
fn a_save_replaces_an_existing_file_and_leaves_no_temporary() {
    let (shape, g) = some_result(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    std::fs::write(&path, b"old contents").unwrap();
    save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap();
    assert_eq!(load_grads(&path).unwrap().grads.grad_h0, f32_rounded(&g.grad_h0));
    assert_eq!(listing(dir.path()), ["out.safetensors"]);
}

#[test]
fn a_save_into_a_missing_folder_fails_and_creates_nothing() {
    let (shape, g) = some_result(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_such_dir").join("out.safetensors");
    // A path the user gave that cannot be written: refused before anything is written (exit 2).
    let err = save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("no_such_dir/out.safetensors"), "{err}");
    assert!(listing(dir.path()).is_empty());

    let p = random_problem(&ProblemSpec::new(shape)).unwrap();
    let err = save_problem(&path, &p).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_save_whose_write_fails_removes_its_temporary() {
    // The destination is a folder: refused before a temporary file is made (exit 2).
    let (shape, g) = some_result(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), b"keep").unwrap();
    let err = save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("taken") && err.to_string().contains("folder"), "{err}");
    assert_eq!(listing(dir.path()), ["taken"]);
    assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"keep");
    // A write that fails halfway (a full disk, say): the temporary file goes, the old file stays.
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"old").unwrap();
    let err = bptt::io::write_atomic_with(&out, |f| {
        use std::io::Write;
        f.write_all(b"half")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(listing(dir.path()), ["out.safetensors", "taken"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}

#[test]
fn saving_states_that_were_not_kept_fails_and_leaves_the_file_as_it_was() {
    let (shape, mut g) = some_result(false);
    g.h.clear();
    g.o.clear();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let before = b"an earlier result, byte for byte".to_vec();
    std::fs::write(&path, &before).unwrap();
    let err = save_grads(&path, &g, &shape, true, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("states"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(listing(dir.path()), ["out.safetensors"]);
}

#[test]
fn a_result_that_does_not_match_its_shape_is_not_written() {
    let (shape, mut g) = some_result(false);
    g.grad_w_qh.pop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let err = save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("`grad_w_qh`"), "{err}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn load_grads_rejects_unknown_names_and_half_pairs() {
    let (shape, g) = some_result(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    save_grads(&path, &g, &shape, false, &BTreeMap::new()).unwrap();
    // Rewrite the file without grad_b_q, and with a stray tensor.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let keep: Vec<(String, TensorView)> = st.tensors().into_iter().filter(|(n, _)| n != "grad_b_q").collect();
    std::fs::write(&path, safetensors::serialize(keep.clone(), None).unwrap()).unwrap();
    let err = load_grads(&path).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("`grad_b_q`"), "{err}");

    let mut extra = keep;
    let one = 1.0f64.to_le_bytes();
    extra.push(("grad_w_xh".into(), TensorView::new(Dtype::F64, vec![1], &one).unwrap()));
    std::fs::write(&path, safetensors::serialize(extra, None).unwrap()).unwrap();
    let err = load_grads(&path).unwrap_err();
    assert!(err.to_string().contains("`grad_w_xh`"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Hardening: hostile files and careless paths.

/// `f`'s bytes with the JSON header rewritten by `edit` (and padded as safetensors pads it).
fn with_header(f: &RawFile, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let bytes = f.bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header = edit(std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end());
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_header_with_a_key_twice_is_refused() {
    let mut f = RawFile::good();
    f.meta("loss", "mse");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twice.safetensors");
    // The file must load as written, and not once a key is repeated (JSON's last one would win).
    std::fs::write(&path, with_header(&f, |h| h.to_string())).unwrap();
    assert!(load_problem(&path, None, None).is_ok());
    std::fs::write(&path, with_header(&f, |h| h.replace(r#""loss":"mse""#, r#""loss":"xent","loss":"mse""#))).unwrap();
    let err = load_problem(&path, None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("the key `loss` twice"), "{err}");
    // A tensor's entry twice, too.
    std::fs::write(&path, with_header(&f, |h| h.replace(r#""dtype":"F64""#, r#""dtype":"F32","dtype":"F64""#)))
        .unwrap();
    assert!(load_problem(&path, None, None).unwrap_err().to_string().contains("the key `dtype` twice"));
}

#[test]
fn loss_at_given_and_in_the_metadata_must_agree() {
    use bptt::io::{Overrides, load_problem_with};
    let dir = tempfile::tempdir().unwrap();
    let mut f = RawFile::good();
    f.meta("loss_at", "all");
    let path = f.write(dir.path());
    let last = Overrides { loss_at: Some(LossAt::Last), ..Default::default() };
    let err = load_problem_with(&path, &last).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("`loss_at` last contradicts the file's metadata loss_at=all"), "{err}");
    // Without the metadata, the argument applies.
    let path = RawFile::good().write(dir.path());
    assert_eq!(load_problem_with(&path, &last).unwrap().loss_at, LossAt::Last);
    assert_eq!(load_problem(&path, None, None).unwrap().loss_at, LossAt::All);
}

#[test]
fn echoed_names_and_values_are_escaped_and_cut() {
    // A metadata value with a newline, a terminal escape code, and 100000 more characters.
    let mut f = RawFile::good();
    let evil = format!("\x1b[31mred\nsecond line{}", "a".repeat(100_000));
    f.meta("activation", &evil);
    let msg = f.load(None, None).unwrap_err().to_string();
    assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg:?}");
    assert!(msg.contains(r"\u{1b}[31mred\nsecond line"), "{msg:?}");
    assert!(msg.chars().count() < 300, "{} characters", msg.chars().count());
    // A tensor name with a newline in it.
    let mut f = RawFile::good();
    f.set("w_hh\nw_xh", &[1], &[1.0]);
    let msg = f.load(None, None).unwrap_err().to_string();
    assert!(!msg.contains('\n') && msg.contains(r"w_hh\nw_xh"), "{msg:?}");
    assert_eq!(bptt::error::quote(&"é".repeat(200)).chars().count(), 81);
}

#[test]
fn a_header_over_100_mb_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let mut bytes = (100_000_001u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, &bytes).unwrap();
    let err = load_problem(&path, None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("more than the 100000000 accepted"), "{err}");
}

#[test]
fn inputs_other_than_regular_files_are_refused() {
    let err = load_problem(Path::new("/dev/zero"), None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("is a device"), "{err}");
    let err = bptt::io::read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
    assert!(err.to_string().contains("is a device"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![0u8; 2000]).unwrap();
    assert!(bptt::io::read_regular(&big, 1000).unwrap_err().to_string().contains("more than"));
    assert_eq!(bptt::io::read_regular(&big, 2000).unwrap().len(), 2000);
}

fn small_grads() -> (bptt::BpttResult, Shape) {
    let p = random_problem(&spec(Shape::new(3, 1, 2, 4, 2).unwrap())).unwrap();
    (reference::bptt(&p), p.shape)
}

#[test]
fn a_250_character_file_name_can_be_saved() {
    // Before: the temporary name `.NAME.tmp-PID-N` passed the 255-byte limit of a file name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.safetensors", "g".repeat(238)));
    assert_eq!(path.file_name().unwrap().len(), 250);
    let (g, shape) = small_grads();
    save_grads(&path, &g, &shape, false, &Default::default()).unwrap();
    assert_eq!(
        load_grads(&path).unwrap().grads.grad_w_hh,
        g.grad_w_hh.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
}

#[test]
fn a_save_keeps_the_old_files_permissions_and_replaces_only_regular_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (g, shape) = small_grads();
    let path = dir.path().join("out.safetensors");
    std::fs::write(&path, b"old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    save_grads(&path, &g, &shape, false, &Default::default()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    assert!(load_grads(&path).is_ok());
    // A symbolic link is refused (before: the link itself was replaced by a file).
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = bptt::io::write_atomic(&link, b"new").unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let err = bptt::io::write_atomic(Path::new("/dev/null"), b"new").unwrap_err();
    assert!(err.to_string().contains("is a device"), "{err}");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device_like());
    assert!(
        bptt::io::check_output_path(&dir.path().join("missing/out.st")).unwrap_err().to_string().contains("missing")
    );
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}

impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

/// The child half of the signal test: starts a save whose writer never finishes, after telling
/// the parent (through a file) that the temporary file exists. Run only by the parent below.
#[test]
#[ignore = "run by interrupted_saves_leave_no_temporary_file, in a child process"]
fn child_save_that_waits_for_a_signal() {
    let Some(dir) = std::env::var_os("BPTT_TEST_SIGNAL_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let _ = bptt::io::write_atomic_with(&dir.join("out.safetensors"), |f| {
        use std::io::Write;
        f.write_all(b"half")?;
        std::fs::write(dir.join("ready"), b"")?;
        std::thread::sleep(std::time::Duration::from_secs(60));
        Ok(())
    });
}

#[test]
fn interrupted_saves_leave_no_temporary_file() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.safetensors"), b"previous result").unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_save_that_waits_for_a_signal", "--nocapture"])
            .env("BPTT_TEST_SIGNAL_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !dir.path().join("ready").exists() {
            assert!(start.elapsed().as_secs() < 30, "the child never started its save");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let temporary = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        };
        assert_eq!(temporary(dir.path()).len(), 1, "the save's temporary file exists while it writes");
        let killed =
            std::process::Command::new("kill").args([format!("-{signal}"), child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "{signal}: the child must die of the signal");
        assert!(temporary(dir.path()).is_empty(), "{signal}: {:?} left behind", temporary(dir.path()));
        assert_eq!(std::fs::read(dir.path().join("out.safetensors")).unwrap(), b"previous result");
    }
}

#[test]
fn norms_neither_underflow_nor_overflow() {
    use bptt::model::{norm, rel_err};
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b;
    assert!(close(norm(&[3e-200, 4e-200]), 5e-200), "{:e}", norm(&[3e-200, 4e-200]));
    assert!(close(norm(&[3e200, 4e200]), 5e200), "{:e}", norm(&[3e200, 4e200]));
    assert_eq!(norm(&[0.0, 0.0]), 0.0);
    assert!(norm(&[1.0, f64::NAN]).is_nan());
    assert_eq!(norm(&[1.0, f64::INFINITY]), f64::INFINITY);
    assert!((rel_err(&[1.1e-200], &[1e-200]) - 0.1).abs() < 1e-12);
    // Gradients of 1e188 have a finite global norm, so clipping happens (before: ‖g‖ = inf
    // and clipping was silently skipped).
    let (mut g, _) = small_grads();
    for v in [&mut g.grad_w_hx, &mut g.grad_w_hh, &mut g.grad_w_qh] {
        v.iter_mut().for_each(|x| *x *= 1e188);
    }
    let (before, after) = bptt::clip::clip_grads(&mut g, 1.0).unwrap();
    assert!(before.is_finite() && before > 1e187, "{before:e}");
    assert!((after - 1.0).abs() < 1e-12, "{after}");
}
