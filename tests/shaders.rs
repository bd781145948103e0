//! Every shader in `shaders/` parses and validates with naga (no adapter needed), opens with a
//! comment naming what it computes, and is one of the kernels the library loads.

use bptt::gpu::kernels::Kernel;
use bptt::train::gpu::UPDATE_KERNELS;

fn validate(name: &str, source: &str) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
}

#[test]
fn every_kernel_validates_with_naga() {
    for k in Kernel::ALL {
        validate(k.name(), k.source());
    }
    for (name, source) in UPDATE_KERNELS {
        validate(name, source);
    }
}

#[test]
fn every_shader_file_is_a_loaded_kernel_and_documents_itself() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut kernels: Vec<String> = Kernel::ALL.iter().map(|k| format!("{}.wgsl", k.name())).collect();
    kernels.extend(UPDATE_KERNELS.iter().map(|(name, _)| format!("{name}.wgsl")));
    kernels.sort();
    assert_eq!(files, kernels, "shaders/ must hold exactly Kernel::ALL and the optimisers' kernels");
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        validate(&f, &text);
        let stem = f.trim_end_matches(".wgsl");
        assert!(text.starts_with(&format!("// {stem}:")), "{f} must open with '// {stem}: <the equation>'");
        assert!(text.contains("Bindings:"), "{f} must document its bindings");
    }
}
