//! Embeds the eBPF object built by `cargo xtask build`. Without it (a plain
//! `cargo build`), an empty object is embedded and `ergon run` says how to
//! build the real one.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=ERGON_BPF_OBJECT");
    let src = std::env::var_os("ERGON_BPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpf/bpfel-unknown-none/release/sampler-ebpf")
        });
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dst = out.join("sampler.bpf.o");
    let bytes = std::fs::read(&src).unwrap_or_default();
    std::fs::write(&dst, bytes).expect("writing the embedded eBPF object to OUT_DIR");
}
