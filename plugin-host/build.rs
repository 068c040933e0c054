//! Builds the example plugin (`job-plugin/`, for `wasm32-wasip2`) and records its path.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );
    let release = dlock_wasm_build::build_wasm(
        &manifest_dir.join("job-plugin"),
        "job-plugin",
        &["src", "wit", "Cargo.toml", "Cargo.lock"],
    );
    let wasm = release.join("job_plugin.wasm");
    assert!(
        wasm.exists(),
        "the plugin build produced no {}",
        wasm.display()
    );
    std::fs::write(
        out_dir.join("job_plugin.rs"),
        format!(
            "/// The example job-runner plugin, built from `plugin-host/job-plugin/`.\n\
             pub static JOB_PLUGIN: &[u8] = include_bytes!({:?});\n",
            wasm.display().to_string()
        ),
    )
    .unwrap();
}
