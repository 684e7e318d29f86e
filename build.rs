//! Marks builds made by a user other than root with `cfg(sockcap_not_root)`, so the
//! end-to-end tests that need a network namespace of their own are reported as ignored
//! (skipped) there instead of passing without having run.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sockcap_not_root)");
    println!("cargo::rerun-if-changed=build.rs");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        println!("cargo::rustc-cfg=sockcap_not_root");
    }
}
