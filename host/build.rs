//! Generates `bundled.rs`: the `BundledScript` enum, one variant per script of the contract
//! (`dlock_contract::Script`), with each script's source from `bundle/scripts/` and its SHA1.
//! The build fails when `bundle/scripts/` holds other scripts than the contract lists.
//!
//! `bundle/` is a copy of what `guest/` and `wit/` build, committed so that this crate
//! packages and builds alone; the test suite checks it against a fresh build of the guest.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

use dlock_contract::Script;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let scripts_dir = manifest_dir.join("bundle/scripts");
    println!("cargo:rerun-if-changed={}", scripts_dir.display());
    let on_disk: BTreeSet<String> = std::fs::read_dir(&scripts_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "lua"))
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    let listed: BTreeSet<String> = Script::ALL.iter().map(|s| s.name().to_owned()).collect();
    assert_eq!(
        on_disk,
        listed,
        "{} holds other scripts than dlock_contract::Script::ALL",
        scripts_dir.display()
    );
    let scripts: Vec<(Script, String)> = Script::ALL
        .iter()
        .map(|&s| {
            let path = scripts_dir.join(format!("{}.lua", s.name()));
            (s, std::fs::read_to_string(path).unwrap())
        })
        .collect();

    let mut code = String::new();
    let w = &mut code;
    writeln!(
        w,
        "/// One of the bundled component's Lua scripts (`bundle/scripts/`): one per\n\
         /// [`dlock_contract::Script`]."
    )
    .unwrap();
    writeln!(w, "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]").unwrap();
    writeln!(w, "pub enum BundledScript {{").unwrap();
    for (script, _) in &scripts {
        writeln!(w, "    /// `{}.lua`.\n    {script:?},", script.name()).unwrap();
    }
    writeln!(w, "}}\n\nimpl BundledScript {{").unwrap();
    writeln!(
        w,
        "    /// Every bundled script, in the order of `Script::ALL`."
    )
    .unwrap();
    let all: Vec<String> = scripts
        .iter()
        .map(|(s, _)| format!("BundledScript::{s:?}"))
        .collect();
    writeln!(
        w,
        "    pub const ALL: [BundledScript; {}] = [{}];",
        all.len(),
        all.join(", ")
    )
    .unwrap();
    let method = |w: &mut String, doc: &str, sig: &str, value: &dyn Fn(Script, &str) -> String| {
        writeln!(
            w,
            "\n    /// {doc}\n    pub {sig} {{\n        match self {{"
        )
        .unwrap();
        for (script, source) in &scripts {
            writeln!(
                w,
                "            BundledScript::{script:?} => {},",
                value(*script, source)
            )
            .unwrap();
        }
        writeln!(w, "        }}\n    }}").unwrap();
    };
    method(
        w,
        "The contract's script this is: its argument shapes are `script().shapes()`.",
        "const fn script(self) -> dlock_contract::Script",
        &|s, _| format!("dlock_contract::Script::{s:?}"),
    );
    method(
        w,
        "The script's file name without `.lua`.",
        "fn name(self) -> &'static str",
        &|s, _| format!("{:?}", s.name()),
    );
    method(
        w,
        "SHA1 of the source in lowercase hex, as Redis names the script.",
        "fn sha1(self) -> &'static str",
        &|_, src| format!("{:?}", sha1_smol::Sha1::from(src).digest().to_string()),
    );
    method(
        w,
        "The Lua source, as the component sends it.",
        "fn source(self) -> &'static str",
        &|s, _| {
            format!(
                "include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/bundle/scripts/{}.lua\"))",
                s.name()
            )
        },
    );
    writeln!(w, "}}").unwrap();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}
