//! Builds the hostile components (`hostile/`, for `wasm32-wasip2`) with a nested cargo and
//! generates `hostile.rs` with their paths.

#[path = "../host/build_support/wasm_build.rs"]
mod wasm_build;

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let hostile = manifest_dir.join("hostile");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    for shared in [
        "../wit",
        "../guest/rt",
        "../guest/scripts",
        "../host/build_support",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(shared).display()
        );
    }
    let watch = [
        "modes",
        "start-loop",
        "huge-reply.lua",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ];
    let release = wasm_build::build_wasm(&hostile, &out_dir.join("hostile-target"), &watch);
    let path = |name: &str| {
        let wasm = release.join(name);
        assert!(
            wasm.exists(),
            "the hostile build produced no {}",
            wasm.display()
        );
        wasm.display().to_string()
    };
    let code = format!(
        "/// The hostile component whose misbehaviour is chosen by its key prefix.\n\
         pub const HOSTILE: &str = {:?};\n\
         /// The hostile component that loops while being instantiated.\n\
         pub const HOSTILE_START: &str = {:?};\n",
        path("dlock_hostile.wasm"),
        path("dlock_hostile_start.wasm"),
    );
    std::fs::write(out_dir.join("hostile.rs"), code).unwrap();
}
