//! Used by the build scripts of dlock's unpublished crates (`tests`, the plugin-host example):
//! builds a cargo workspace of components for `wasm32-wasip2` with a nested cargo,
//! reproducibly.
//!
//! The nested build gets its own target directory (sharing the outer one deadlocks on cargo's
//! lock), one per name under the outer profile directory, so that the calling build script,
//! run again for another feature set (`cargo test`, `cargo clippy` and `cargo build -p` each
//! resolve their own), finds the components built and does not build a copy; it gets none of the outer build's rustflags or target settings (they would leak host
//! flags into the wasm link and hide the workspace's own `.cargo/config.toml`, which cargo
//! finds from the working directory). Paths of dependencies in cargo's home are remapped to
//! `/cargo`, so the bytes do not depend on where cargo keeps its registry.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the workspace at `dir` (`--release --locked`) into the target directory `name`,
/// watching `watch` (paths relative to `dir`) for changes; returns the directory holding the
/// `.wasm` files.
pub fn build_wasm(dir: &Path, name: &str, watch: &[&str]) -> PathBuf {
    build_wasm_with(dir, name, watch, &[])
}

/// Like [`build_wasm`], with more arguments for `cargo build` (`-p`, `--features`); builds
/// that differ in them need different names.
pub fn build_wasm_with(dir: &Path, name: &str, watch: &[&str], args: &[&str]) -> PathBuf {
    let target_dir = target_dir(name);
    for path in watch {
        println!("cargo:rerun-if-changed={}", dir.join(path).display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set");
    let remap = format!(
        "target.wasm32-wasip2.rustflags=['--remap-path-prefix={}=/cargo']",
        cargo_home.display()
    );
    let status = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--config",
            &remap,
            "--target-dir",
        ])
        .arg(&target_dir)
        .args(args)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("cannot run cargo to build components");
    assert!(
        status.success(),
        "building the components in {} failed; is the target installed? \
         run: rustup target add wasm32-wasip2",
        dir.display()
    );
    target_dir.join("wasm32-wasip2/release")
}

/// `<profile dir>/wasm-build/<name>`, found from `OUT_DIR` (`<profile dir>/build/<unit>/out`);
/// `OUT_DIR/<name>` if it is laid out otherwise.
fn target_dir(name: &str) -> PathBuf {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is not set"));
    let mut up = out_dir.ancestors().skip(2);
    match (up.next(), up.next()) {
        (Some(build), Some(profile)) if build.file_name() == Some("build".as_ref()) => {
            profile.join("wasm-build").join(name)
        }
        _ => out_dir.join(name),
    }
}
