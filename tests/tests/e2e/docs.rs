//! The docs name the tests that prove each claim (`module::test_name`): every test so named
//! exists, in a file or module of that name, so a renamed or moved test cannot leave a claim
//! pointing at nothing; and every relative link between the docs reaches a file and, with a
//! `#fragment`, one of its headings.

use std::collections::BTreeSet;
use std::path::Path;

use dlock_tests::repository::{self, files_of};

/// Every `module::...::name` in backquotes in `text` whose last part looks like a test's name
/// (four words or more, or a `*` for every test of the module).
fn named_tests(text: &str) -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let parts: Vec<&str> = quoted.split("::").collect();
        let ident = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let Some((name, modules)) = parts.split_last() else {
            continue;
        };
        if modules.is_empty() || !modules.iter().all(|m| ident(m)) {
            continue;
        }
        if *name == "*" || (ident(name) && name.split('_').count() >= 4) {
            found.push((
                modules.iter().map(|m| (*m).to_owned()).collect(),
                (*name).to_owned(),
            ));
        }
    }
    found
}

/// The names right after each `keyword` (`fn `, `mod `) in `text`.
fn names_after<'a>(text: &'a str, keyword: &'a str) -> impl Iterator<Item = String> + 'a {
    text.split(keyword).skip(1).map(|piece| {
        piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    })
}

#[test]
fn every_test_the_docs_name_exists_where_they_say() {
    let root = &repository::root();
    let mut sources = files_of(root, "rs");
    sources.extend(files_of(root, "mjs"));
    // Each source file's module names (its stem, the directories above it, its `mod` items)
    // and the functions it defines.
    let files: Vec<(BTreeSet<String>, BTreeSet<String>)> = sources
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let mut modules: BTreeSet<String> = names_after(&text, "mod ").collect();
            modules.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
            let relative = path.strip_prefix(root).unwrap().parent().unwrap();
            modules.extend(
                relative
                    .iter()
                    .map(|dir| dir.to_string_lossy().into_owned()),
            );
            (modules, names_after(&text, "fn ").collect())
        })
        .collect();
    let mut wrong = Vec::new();
    for doc in &docs(root) {
        let text = std::fs::read_to_string(doc).unwrap();
        for (path, name) in named_tests(&text) {
            let found = files.iter().any(|(modules, functions)| {
                path.iter().all(|m| modules.contains(m))
                    && (name == "*" || functions.contains(&name))
            });
            if !found {
                wrong.push(format!(
                    "{}: `{}::{name}`",
                    doc.strip_prefix(root).unwrap().display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the docs name tests that do not exist:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn test_names_are_found_in_backquoted_paths_only() {
    let found = named_tests(
        "see `hostile::an_endless_loop_traps_and_poisons` and `limits::tests::*`, not \
         `Policy::with_key_namespace`, `redis::add_to_linker` or hostile::a_b_c_d",
    );
    assert_eq!(
        found,
        vec![
            (
                vec!["hostile".to_owned()],
                "an_endless_loop_traps_and_poisons".to_owned()
            ),
            (
                vec!["limits".to_owned(), "tests".to_owned()],
                "*".to_owned()
            ),
        ]
    );
}

/// The Markdown docs: the README, the Node package's README and everything under docs/.
fn docs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut docs = vec![root.join("README.md"), root.join("node/README.md")];
    docs.extend(files_of(&root.join("docs"), "md"));
    docs
}

/// GitHub's anchor for a heading: lowercase, spaces to hyphens, punctuation other than `-`
/// and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_reaches_a_file_and_heading() {
    let root = &repository::root();
    let mut wrong = Vec::new();
    for doc in docs(root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        for piece in text.split("](").skip(1) {
            let Some(target) = piece.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            let reached = path.exists()
                && (fragment.is_empty()
                    || std::fs::read_to_string(&path).is_ok_and(|linked| {
                        linked
                            .lines()
                            .filter_map(|line| line.strip_prefix('#'))
                            .any(|h| anchor(h.trim_start_matches('#')) == fragment)
                    }));
            if !reached {
                wrong.push(format!(
                    "{}: ]({target})",
                    doc.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "links that reach nothing:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor(" Waiting and the watchdog"),
        "waiting-and-the-watchdog"
    );
    assert_eq!(anchor(" The `dlock` command"), "the-dlock-command");
    assert_eq!(anchor(" Hand-off"), "hand-off");
}
