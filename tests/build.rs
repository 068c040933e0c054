//! Builds the guest component (`../guest`) and the hostile components and plugins (`hostile/`) for
//! `wasm32-wasip2` with a nested cargo, and generates `components.rs` with their paths: the
//! hostile components for the security tests, the fresh guest for the test that checks the
//! bundle committed in `host/bundle/` against its sources, and the floor component (`floor/`)
//! the bench compares the guest with.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );
    let guest = dlock_wasm_build::build_wasm(
        &manifest_dir.join("../guest"),
        "guest",
        &[
            "src",
            "rt",
            "contract",
            "scripts",
            "Cargo.toml",
            "Cargo.lock",
            ".cargo/config.toml",
        ],
    );
    let hostile_watch = [
        "modes",
        "start-loop",
        "plugin",
        "huge-reply.lua",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ];
    let hostile =
        dlock_wasm_build::build_wasm(&manifest_dir.join("hostile"), "hostile", &hostile_watch);
    let redis_plugin = dlock_wasm_build::build_wasm_with(
        &manifest_dir.join("hostile"),
        "hostile-redis",
        &hostile_watch,
        &["-p", "dlock-hostile-plugin", "--features", "redis"],
    );
    let floor = dlock_wasm_build::build_wasm(
        &manifest_dir.join("floor"),
        "floor",
        &["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"],
    );
    let path = |dir: &Path, name: &str| {
        let wasm = dir.join(name);
        assert!(wasm.exists(), "the build produced no {}", wasm.display());
        wasm.display().to_string()
    };
    let code = format!(
        "/// The hostile component whose misbehaviour is chosen by its key prefix.\n\
         pub const HOSTILE: &str = {:?};\n\
         /// The hostile component that loops while being instantiated.\n\
         pub const HOSTILE_START: &str = {:?};\n\
         /// The hostile plugin: imports the lock API (`lock-user`) and misbehaves by mode.\n\
         pub const HOSTILE_PLUGIN: &str = {:?};\n\
         /// The hostile plugin that also imports `dlock:lock/redis`.\n\
         pub const HOSTILE_REDIS_PLUGIN: &str = {:?};\n\
         /// The guest component freshly built from `guest/`.\n\
         pub const GUEST: &str = {:?};\n\
         /// The floor component (`floor/`): one `redis-eval` per acquire and per release.\n\
         pub const FLOOR: &str = {:?};\n",
        path(&hostile, "dlock_hostile.wasm"),
        path(&hostile, "dlock_hostile_start.wasm"),
        path(&hostile, "dlock_hostile_plugin.wasm"),
        path(&redis_plugin, "dlock_hostile_plugin.wasm"),
        path(&guest, "dlock_guest.wasm"),
        path(&floor, "dlock_floor.wasm"),
    );
    std::fs::write(out_dir.join("components.rs"), code).unwrap();
}
