//! Builds the guest component (`../guest`, for `wasm32-wasip2`) with a nested cargo, and
//! generates `bundled.rs`: the component's path and the SHA1 of each of its Lua scripts.
//!
//! The nested build gets its own target directory (sharing the outer one deadlocks on cargo's
//! lock) and none of the outer build's rustflags or target settings (they would leak host
//! flags into the wasm link and hide the guest's own `.cargo/config.toml`).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPTS: [&str; 4] = ["acquire", "release", "extend", "check"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guest = manifest_dir.join("../guest");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guest-target");

    for path in [
        "src",
        "scripts",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", guest.join(path).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&guest)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("cannot run cargo to build the guest component");
    assert!(
        status.success(),
        "building the guest component failed; is the target installed? \
         run: rustup target add wasm32-wasip2"
    );
    let wasm = target_dir.join("wasm32-wasip2/release/dlock_guest.wasm");
    assert!(
        wasm.exists(),
        "the guest build produced no {}",
        wasm.display()
    );

    let mut code = String::new();
    writeln!(code, "/// Path of the guest component built from `guest/`.").unwrap();
    writeln!(
        code,
        "pub const COMPONENT_PATH: &str = {:?};",
        wasm.display().to_string()
    )
    .unwrap();
    writeln!(code, "/// The guest component's bytes.").unwrap();
    writeln!(
        code,
        "pub static COMPONENT: &[u8] = include_bytes!({:?});",
        wasm.display().to_string()
    )
    .unwrap();
    writeln!(
        code,
        "/// The guest's Lua scripts, with SHA1s computed at build time."
    )
    .unwrap();
    writeln!(code, "pub static SCRIPTS: &[BundledScript] = &[").unwrap();
    for name in SCRIPTS {
        let path = guest.join("scripts").join(format!("{name}.lua"));
        let source = std::fs::read_to_string(&path).unwrap();
        let sha1 = sha1_smol::Sha1::from(&source).digest().to_string();
        writeln!(
            code,
            "    BundledScript {{ name: {name:?}, sha1: {sha1:?}, source: include_str!({:?}) }},",
            canonical(&path).display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "];").unwrap();
    std::fs::write(out_dir.join("bundled.rs"), code).unwrap();
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap()
}
