//! Generates `bundled.rs` from `bundle/scripts/`: the `BundledScript` enum, one variant per
//! Lua script of the bundled component, with each script's source and SHA1.
//!
//! `bundle/` is a copy of what `guest/` and `wit/` build, committed so that this crate
//! packages and builds alone; the test suite checks it against a fresh build of the guest.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let scripts_dir = manifest_dir.join("bundle/scripts");
    println!("cargo:rerun-if-changed={}", scripts_dir.display());
    let mut scripts: Vec<(String, String)> = std::fs::read_dir(&scripts_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "lua"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let source = std::fs::read_to_string(&path).unwrap();
            (name, source)
        })
        .collect();
    scripts.sort();

    let variant = |name: &str| {
        name.split(['-', '_'])
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
    };
    let mut code = String::new();
    let w = &mut code;
    writeln!(
        w,
        "/// One of the bundled component's Lua scripts (`bundle/scripts/`)."
    )
    .unwrap();
    writeln!(w, "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]").unwrap();
    writeln!(w, "pub enum BundledScript {{").unwrap();
    for (name, _) in &scripts {
        writeln!(w, "    /// `{name}.lua`.\n    {},", variant(name)).unwrap();
    }
    writeln!(w, "}}\n\nimpl BundledScript {{").unwrap();
    writeln!(w, "    /// Every bundled script.").unwrap();
    let all: Vec<String> = scripts
        .iter()
        .map(|(n, _)| format!("BundledScript::{}", variant(n)))
        .collect();
    writeln!(
        w,
        "    pub const ALL: [BundledScript; {}] = [{}];",
        all.len(),
        all.join(", ")
    )
    .unwrap();
    let method = |w: &mut String, doc: &str, name: &str, value: &dyn Fn(&str, &str) -> String| {
        writeln!(
            w,
            "\n    /// {doc}\n    pub fn {name}(self) -> &'static str {{\n        match self {{"
        )
        .unwrap();
        for (script, source) in &scripts {
            writeln!(
                w,
                "            BundledScript::{} => {},",
                variant(script),
                value(script, source)
            )
            .unwrap();
        }
        writeln!(w, "        }}\n    }}").unwrap();
    };
    method(
        w,
        "The script's file name without `.lua`.",
        "name",
        &|n, _| format!("{n:?}"),
    );
    method(
        w,
        "SHA1 of the source in lowercase hex, as Redis names the script.",
        "sha1",
        &|_, s| format!("{:?}", sha1_smol::Sha1::from(s).digest().to_string()),
    );
    method(
        w,
        "The Lua source, as the component sends it.",
        "source",
        &|n, _| {
            format!(
                "include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/bundle/scripts/{n}.lua\"))"
            )
        },
    );
    writeln!(w, "}}").unwrap();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}
