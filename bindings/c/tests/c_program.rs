//! Compiles tests/analyze.c against the cdylib and include/deepflow.h with the system C
//! compiler, and runs it on the real bundled capture (examples/data/demo.pcap: HTTP, DNS, TLS,
//! gRPC, MySQL, PostgreSQL, MQTT, Kafka, NATS on 127.0.0.1). Skips, with a message, when no C
//! compiler is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>: the directory holding libdeepflow.so (this test binary is in its deps/).
/// Where cargo put `libdeepflow.so` for this test run: `target/<profile>/deps` (next to the test
/// binary; `cargo test` builds the cdylib there) or `target/<profile>` (after `cargo build`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("target/<profile>/deps/<test>").to_path_buf();
    if deps.join("libdeepflow.so").exists() {
        return deps;
    }
    deps.parent().expect("target/<profile>").to_path_buf()
}

fn compiler() -> Option<String> {
    let candidates = [std::env::var("CC").ok(), Some("cc".into()), Some("gcc".into())];
    candidates
        .into_iter()
        .flatten()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[test]
fn c_program_on_a_real_capture() {
    let Some(cc) = compiler() else {
        println!("SKIP c_program_on_a_real_capture: no C compiler (cc/gcc) installed");
        return;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = profile_dir();
    assert!(
        lib_dir.join("libdeepflow.so").exists(),
        "{} has no libdeepflow.so (cargo builds the cdylib with the tests)",
        lib_dir.display()
    );
    let work = tempfile::tempdir().expect("tempdir");
    let exe = work.path().join("analyze");
    let out = Command::new(&cc)
        .args(["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(crate_dir.join("tests/analyze.c"))
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-ldeepflow")
        .output()
        .expect("run the C compiler");
    assert!(out.status.success(), "{cc} failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let inventory = work.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).expect("write inventory");
    let pcap = crate_dir.join("../../examples/data/demo.pcap");
    let run = Command::new(&exe).arg(&pcap).arg(work.path()).arg(&inventory).output().expect("run the C program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(run.status.success(), "the C program failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("ok: error codes"), "{stdout}");
}

/// Tags the loopback traffic of the capture: one VPC, a 127.0.0.0/8 subnet, one host.
const INVENTORY: &str = "\
vpcs: [{name: lo}]
subnets: [{name: loopback, vpc: lo, cidrs: [127.0.0.0/8]}]
hosts: [{name: demo-host, ips: [127.0.0.1], vpc: lo}]
";
