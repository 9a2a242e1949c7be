//! Compiles the BPF C programs in `bpf/` with clang (`-target bpf`, CO-RE) when the `ebpf`
//! feature is on and the target is Linux x86_64. If clang is missing or fails, the build goes
//! on with empty objects and a warning; loading then fails with a clear error at run time
//! (`ebpf::Error::NotBuilt`), so the rest of the workspace keeps building.
use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: [&str; 2] = ["socket_tracer", "profiler"];

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=DEEPFLOW_BPF_CLANG");
    println!("cargo:rustc-check-cfg=cfg(deepflow_bpf_built)");
    if std::env::var_os("CARGO_FEATURE_EBPF").is_none() {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut errors = Vec::new();
    if os != "linux" || arch != "x86_64" {
        errors.push(format!("BPF programs are built for linux/x86_64 only (target {os}/{arch})"));
    }
    let clang = std::env::var("DEEPFLOW_BPF_CLANG").unwrap_or_else(|_| "clang".into());
    for p in PROGRAMS {
        let obj = out.join(format!("{p}.bpf.o"));
        if errors.is_empty() {
            let res = Command::new(&clang)
                .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Wno-unused-function"])
                .arg("-Ibpf")
                .arg("-c")
                .arg(format!("bpf/{p}.bpf.c"))
                .arg("-o")
                .arg(&obj)
                .output();
            match res {
                Ok(o) if o.status.success() => {
                    // Drop DWARF (BTF stays): a smaller object to embed.
                    let _ = Command::new("llvm-strip").arg("-g").arg(&obj).status();
                    continue;
                }
                Ok(o) => {
                    errors.push(format!("{clang} failed on bpf/{p}.bpf.c: {}", String::from_utf8_lossy(&o.stderr)))
                }
                Err(e) => errors.push(format!("cannot run {clang} (install clang and libbpf-dev): {e}")),
            }
        }
        std::fs::write(&obj, b"").expect("write empty BPF object");
    }
    if errors.is_empty() {
        println!("cargo:rustc-cfg=deepflow_bpf_built");
        println!("cargo:rustc-env=DEEPFLOW_BPF_BUILD_ERROR=");
    } else {
        let msg = errors.join("; ").replace('\n', " ");
        println!("cargo:warning=deepflow-capture ebpf: {msg}");
        println!("cargo:rustc-env=DEEPFLOW_BPF_BUILD_ERROR={msg}");
    }
}
