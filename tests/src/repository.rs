//! The repository the tests run in: its root, and the files the doc and fact checks read.

use std::path::{Path, PathBuf};

/// The repository's root directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// Every file under `dir` that is the repository's own: not build output (`target`, jco's
/// `gen`), dependencies (`node_modules`) or git's store.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                let name = entry.file_name();
                if !matches!(
                    name.to_string_lossy().as_ref(),
                    "target" | "node_modules" | "gen" | ".git"
                ) {
                    pending.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// [`files`] under `dir` whose extension is `kind` (`rs`, `md`, ...).
pub fn files_of(dir: &Path, kind: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == kind))
        .collect()
}
