//! The shape of each crate's modules: no crate's top-level modules import each other in a
//! cycle, and docs/ARCHITECTURE.md names every module file of the host and the guest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dlock_tests::repository::{files_of, root};

/// The crates whose modules are checked, by their source directory.
const CRATES: &[&str] = &[
    "host/src",
    "guest/src",
    "contract/src",
    "cli/src",
    "tests/src",
];

/// A file's module path under `src`: `redis/wait.rs` is `["redis", "wait"]`, `redis/mod.rs`
/// `["redis"]`, `lib.rs` and `main.rs` `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.len() == 1 && matches!(path[0].as_str(), "lib" | "main") {
        path.clear();
    }
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// `source` without comments and without a trailing `#[cfg(test)] mod tests`.
fn code_of(source: &str) -> String {
    let code = source
        .lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n");
    match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => code[..at].to_owned(),
        None => code,
    }
}

/// The identifiers right after each occurrence of `prefix` in `code`; after `prefix{`, the
/// first identifier of each item of the group.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.push(ident(rest));
            continue;
        };
        let (mut depth, mut item) = (0usize, String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(ident(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        names.push(ident(&item));
    }
    names.retain(|name| !name.is_empty());
    names
}

/// What the crate root re-exports from its own modules (`pub use module::{A, B}`): each name
/// with its module, so that `crate::A` counts as a use of `module`.
fn reexports(root_code: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for statement in root_code.split(';') {
        let Some(used) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = used.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.split(" as ").last().unwrap_or(name).trim();
            found.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    found
}

/// The top-level modules of the crate in `src` (its unit tests and binaries left out), each
/// with the top-level modules its code names, directly or through a name the root re-exports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut uses = Vec::new();
    let mut reexported = BTreeMap::new();
    for file in files_of(src, "rs") {
        let path = module_path(src, &file);
        let Some(top) = path.first().cloned() else {
            reexported.extend(reexports(&code_of(
                &std::fs::read_to_string(&file).unwrap(),
            )));
            continue;
        };
        if matches!(top.as_str(), "tests" | "bin") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let mut names = names_after(&code, "crate::");
        // From a module `depth` deep, that many `super::`s reach the crate's root.
        let to_root = "super::".repeat(path.len());
        names.extend(names_after(&code, &to_root));
        graph.entry(top.clone()).or_default();
        uses.push((top, names));
    }
    for (top, names) in uses {
        let used: Vec<String> = names
            .into_iter()
            .map(|name| reexported.get(&name).cloned().unwrap_or(name))
            .filter(|name| *name != top && graph.contains_key(name))
            .collect();
        graph.get_mut(&top).unwrap().extend(used);
    }
    graph
}

/// A cycle of `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        trail: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = trail.iter().position(|m| m == module) {
            let mut cycle = trail[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        trail.push(module.to_owned());
        for next in &graph[module] {
            if let Some(cycle) = visit(graph, next, trail, done) {
                return Some(cycle);
            }
        }
        trail.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_sees_a_cycle_through_a_group_a_super_path_and_a_reexport() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, code: &str| std::fs::write(src.join(name), code).unwrap();
    std::fs::create_dir(src.join("b")).unwrap();
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod d;\nmod e;\npub use d::{D, E as F};\n",
    );
    write("a.rs", "use crate::{c::C, b};\n");
    write("b/mod.rs", "mod inner;\n");
    write(
        "b/inner.rs",
        "// crate::c in a comment\nfn f() { super::super::a::g() }\n",
    );
    write("c.rs", "#[cfg(test)]\nmod tests { use crate::a; }\n");
    write("d.rs", "pub struct D(crate::c::C);\n");
    write("e.rs", "fn f(_: crate::F) {}\n");
    let graph = module_graph(src);
    assert_eq!(graph["a"], BTreeSet::from(["b".into(), "c".into()]));
    assert_eq!(
        graph["c"],
        BTreeSet::new(),
        "comments and unit tests are no use"
    );
    assert_eq!(
        graph["e"],
        BTreeSet::from(["d".into()]),
        "through the re-export"
    );
    let cycle = find_cycle(&graph).expect("a -> b -> a");
    assert_eq!(cycle, ["a", "b", "a"]);
}

/// No crate's top-level modules import each other in a cycle: each can be read, and changed,
/// knowing only the modules below it.
#[test]
fn no_crate_has_a_module_cycle() {
    for krate in CRATES {
        let graph = module_graph(&root().join(krate));
        assert!(graph.len() > 2, "{krate}: is the scan looking?");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate} has a module cycle: {}", cycle.join(" -> "));
        }
    }
}

/// docs/ARCHITECTURE.md's section on each crate names every module file of it (`name.rs` or
/// `dir/name.rs`, and `name/` for a directory module).
#[test]
fn the_architecture_doc_names_every_module_of_the_host_and_the_guest() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for (krate, heading) in [("host/src", "## The host"), ("guest/src", "## The guest")] {
        let start = doc.find(heading).unwrap();
        let end = doc[start + 1..]
            .find("\n## ")
            .map_or(doc.len(), |at| start + 1 + at);
        let section = &doc[start..end];
        let src = root().join(krate);
        for file in files_of(&src, "rs") {
            let path = module_path(&src, &file);
            let Some(last) = path.last() else {
                continue;
            };
            if path.first().is_some_and(|top| top == "tests") {
                continue;
            }
            // `name.rs` or `dir/name.rs`, in backticks.
            let named = if file.ends_with("mod.rs") {
                format!("{last}/`")
            } else {
                format!("{last}.rs`")
            };
            assert!(
                section.contains(&named),
                "docs/ARCHITECTURE.md's \"{heading}\" does not name {named} ({})",
                file.display()
            );
        }
    }
}
