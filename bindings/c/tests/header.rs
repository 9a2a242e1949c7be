//! The checked-in header include/deepflow.h must be what cbindgen generates from src/lib.rs.
//! Regenerate it with `DEEPFLOW_UPDATE_HEADER=1 cargo test -p deepflow-c --test header`.

use std::path::Path;

#[test]
fn header_matches_cbindgen_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");
    let path = dir.join("include/deepflow.h");
    if std::env::var_os("DEEPFLOW_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "bindings/c/include/deepflow.h is out of date with src/lib.rs; regenerate it with\n  \
         DEEPFLOW_UPDATE_HEADER=1 cargo test -p deepflow-c --test header"
    );
}
