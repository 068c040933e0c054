//! Builds the guest component (`../guest`, for `wasm32-wasip2`) with a nested cargo, and
//! generates `bundled.rs`: the component's path and the SHA1 of each of its Lua scripts.

#[path = "build_support/wasm_build.rs"]
mod wasm_build;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SCRIPTS: [&str; 4] = ["acquire", "release", "extend", "check"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guest = manifest_dir.join("../guest");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("build_support").display()
    );
    let watch = [
        "src",
        "rt",
        "scripts",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ];
    let release = wasm_build::build_wasm(&guest, &out_dir.join("guest-target"), &watch);
    let wasm = release.join("dlock_guest.wasm");
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
            "    BundledScript {{ name: {name:?}, role: Role::{}, sha1: {sha1:?}, source: include_str!({:?}) }},",
            capitalized(name),
            canonical(&path).display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "];").unwrap();
    std::fs::write(out_dir.join("bundled.rs"), code).unwrap();
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap()
}
