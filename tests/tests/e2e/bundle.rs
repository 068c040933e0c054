//! `host/bundle/` is what `guest/` and `wit/` build: the committed component is byte for byte
//! a fresh build of `guest/` (the build is reproducible), and the committed scripts and WIT are
//! the sources'. Run `scripts/bundle` after changing `guest/`, `contract/` or `wit/` to refresh
//! it.

use std::path::{Path, PathBuf};

use dlock_tests::components::GUEST;
use dlock_tests::repository::root as repo;

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// With `DLOCK_BLESS=1`, makes `copy` hold exactly `source`'s files; otherwise asserts that it
/// does.
fn check_or_bless(source: &Path, copy: &Path) {
    let bless = std::env::var_os("DLOCK_BLESS").is_some_and(|v| v == "1");
    if bless {
        let _ = std::fs::remove_dir_all(copy);
        for file in files(source) {
            let to = copy.join(&file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(source.join(&file), to).unwrap();
        }
        return;
    }
    assert_eq!(
        files(source),
        files(copy),
        "{} lists other files than {}: run scripts/bundle",
        copy.display(),
        source.display()
    );
    for file in files(source) {
        assert!(
            std::fs::read(source.join(&file)).unwrap() == std::fs::read(copy.join(&file)).unwrap(),
            "{} differs from {}: run scripts/bundle",
            copy.join(&file).display(),
            source.join(&file).display()
        );
    }
}

#[test]
fn the_bundled_component_is_a_fresh_build_of_the_guest() {
    let committed = repo().join("host/bundle/dlock_guest.wasm");
    let fresh = std::fs::read(GUEST).unwrap();
    if std::env::var_os("DLOCK_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&committed, &fresh).unwrap();
        return;
    }
    assert!(
        std::fs::read(&committed).unwrap() == fresh,
        "{} is not what guest/ builds: run scripts/bundle",
        committed.display()
    );
    assert!(
        dlock_host::bundled::COMPONENT == fresh.as_slice(),
        "this test binary embeds an older bundle: rebuild after scripts/bundle"
    );
}

#[test]
fn the_bundled_scripts_and_wit_are_the_sources() {
    check_or_bless(
        &repo().join("guest/scripts"),
        &repo().join("host/bundle/scripts"),
    );
    check_or_bless(&repo().join("wit"), &repo().join("host/bundle/wit"));
}
