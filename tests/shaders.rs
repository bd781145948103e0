//! Every shader in `shaders/` parses and validates with naga (no adapter needed), joined with
//! the shared prelude as the library loads it; each opens with a comment naming what it
//! computes and is one of the kernels the library loads; and the Rust side agrees with the
//! shaders: the activation codes, each kernel's bindings (uniform 0, then storage buffers
//! read-only or read-write in order) and its workgroup size.

use bptt::Activation;
use bptt::gpu::kernels::{Kernel, PRELUDE, with_prelude};
use bptt::train::gpu::UPDATE_KERNELS;

fn parse(name: &str, source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)))
}

fn validate(name: &str, source: &str) -> naga::Module {
    let module = parse(name, source);
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    module
}

#[test]
fn every_kernel_validates_with_naga() {
    for k in Kernel::ALL {
        validate(k.name(), &k.source());
    }
    for (name, source) in UPDATE_KERNELS {
        validate(name, &with_prelude(source));
    }
}

#[test]
fn every_shader_file_is_a_loaded_kernel_and_documents_itself() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl") && n != "prelude.wgsl")
        .collect();
    files.sort();
    let mut kernels: Vec<String> = Kernel::ALL.iter().map(|k| format!("{}.wgsl", k.name())).collect();
    kernels.extend(UPDATE_KERNELS.iter().map(|(name, _)| format!("{name}.wgsl")));
    kernels.sort();
    assert_eq!(files, kernels, "shaders/ must hold exactly Kernel::ALL, the optimisers' kernels and the prelude");
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        validate(&f, &with_prelude(&text));
        let stem = f.trim_end_matches(".wgsl");
        assert!(text.starts_with(&format!("// {stem}:")), "{f} must open with '// {stem}: <the equation>'");
        assert!(text.contains("Bindings:"), "{f} must document its bindings");
    }
    assert!(PRELUDE.starts_with("// prelude:"), "the prelude says what it is");
    // The prelude validates on its own: it declares no bindings and no entry point.
    let prelude = validate("prelude", PRELUDE);
    assert!(prelude.entry_points.is_empty());
}

/// The integer value of the prelude's constant `name`.
fn constant(module: &naga::Module, name: &str) -> u32 {
    let (_, c) =
        module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("{name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref other => panic!("{name} = {other:?}"),
    }
}

#[test]
fn the_activation_codes_are_the_preludes() {
    let prelude = parse("prelude", PRELUDE);
    for (act, name) in
        [(Activation::Identity, "ACT_IDENTITY"), (Activation::Tanh, "ACT_TANH"), (Activation::Relu, "ACT_RELU")]
    {
        assert_eq!(act.code(), constant(&prelude, name), "{name}");
    }
}

#[test]
fn the_rust_bindings_and_workgroup_sizes_match_the_shaders() {
    for k in Kernel::ALL {
        let module = validate(k.name(), &k.source());
        // (binding, Some(read_only)) for storage buffers, None for the uniform.
        let mut bindings: Vec<(u32, Option<bool>)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                let b = g.binding.as_ref()?;
                assert_eq!(b.group, 0, "{}: every binding is in group 0", k.name());
                let kind = match g.space {
                    naga::AddressSpace::Uniform => None,
                    naga::AddressSpace::Storage { access } => Some(!access.contains(naga::StorageAccess::STORE)),
                    other => panic!("{}: binding {} in {other:?}", k.name(), b.binding),
                };
                Some((b.binding, kind))
            })
            .collect();
        bindings.sort();
        let mut expected = vec![(0, None)];
        expected.extend(k.storage_read_only().iter().enumerate().map(|(n, &ro)| (n as u32 + 1, Some(ro))));
        assert_eq!(bindings, expected, "{}: the shader's bindings against Kernel::storage_read_only", k.name());
        let entry = module.entry_points.iter().find(|e| e.name == "main").expect("main");
        let size: u32 = entry.workgroup_size.iter().product();
        if k == Kernel::RecurrentStep {
            // @workgroup_size(ROWS, CHUNKS): overrides the Rust side sets from the layout.
            assert!(entry.workgroup_size_overrides.is_some(), "recurrent_step's size comes from its overrides");
        } else {
            assert_eq!(size, k.workgroup_size(), "{}: @workgroup_size against Kernel::workgroup_size", k.name());
        }
    }
}
