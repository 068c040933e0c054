//! The on-disk cache of compiled components.
//!
//! Compiling the component with Cranelift takes tens of milliseconds; loading a precompiled
//! artifact takes hundreds of microseconds. Artifacts are keyed by the component's SHA1 and
//! the engine's compatibility hash (wasmtime version, target, settings), so a changed
//! component or engine never loads a stale artifact.
//!
//! Loading an artifact means running native code from a file, so the cache only loads what it
//! can trust: the directory and the file must belong to this user and be writable by nobody
//! else, and the file must end with the SHA1 of its contents (a truncated or corrupted file is
//! recompiled and replaced, not loaded).

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

const TRAILER_MAGIC: &[u8; 8] = b"DLOCKSUM";
const TRAILER_LEN: usize = TRAILER_MAGIC.len() + 20;

/// The artifact file for `bytes` compiled by `engine` in `dir`.
pub(crate) fn artifact_path(engine: &Engine, bytes: &[u8], dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let component = sha1_smol::Sha1::from(bytes).digest().to_string();
    dir.join(format!("{component}-{:016x}.cwasm", hasher.finish()))
}

/// The compiled component: loaded from `dir` when a trustworthy artifact is there, otherwise
/// compiled and (best effort) stored for next time.
pub(crate) fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    dir: &Path,
) -> wasmtime::Result<Component> {
    let path = artifact_path(engine, bytes, dir);
    if let Some(component) = load(engine, &path) {
        return Ok(component);
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(artifact) = component.serialize() {
        let _ = store(dir, &path, &artifact);
    }
    Ok(component)
}

/// True when `meta` belongs to this user and no one else may write it.
fn private(meta: &fs::Metadata) -> bool {
    meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

fn load(engine: &Engine, path: &Path) -> Option<Component> {
    let dir_ok = path
        .parent()
        .and_then(|d| fs::metadata(d).ok())
        .is_some_and(|m| private(&m));
    let file_ok = fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && private(&m));
    if !dir_ok || !file_ok {
        return None;
    }
    let data = fs::read(path).ok()?;
    let body = verified_body(&data)?;
    // SAFETY: `Component::deserialize` runs the artifact's machine code, so it must be an
    // artifact wasmtime produced. This one was written by `store` below (the directory and
    // the file belong to this user and no one else can write them) and its SHA1 trailer
    // matches, so it is intact; wasmtime itself rejects an artifact of another engine
    // configuration or version, and then we recompile.
    #[allow(
        unsafe_code,
        reason = "loading our own precompiled artifact, checked above"
    )]
    let component = unsafe { Component::deserialize(engine, body) };
    component.ok()
}

/// The artifact without its trailer, if the trailer's SHA1 matches.
fn verified_body(data: &[u8]) -> Option<&[u8]> {
    let split = data.len().checked_sub(TRAILER_LEN)?;
    let (body, trailer) = data.split_at(split);
    let (magic, sum) = trailer.split_at(TRAILER_MAGIC.len());
    (magic == TRAILER_MAGIC && sum == sha1_smol::Sha1::from(body).digest().bytes()).then_some(body)
}

/// Writes the artifact with its trailer to a private temporary file, then renames it into
/// place, so readers never see a partial file.
fn store(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Write only into a directory no one else can plant files or links in.
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || !private(&meta) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not a directory private to this user", dir.display()),
        ));
    }
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    // A leftover of a crashed writer with the same name; never follow or reuse it.
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(artifact)?;
    file.write_all(TRAILER_MAGIC)?;
    file.write_all(&sha1_smol::Sha1::from(artifact).digest().bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::default()
    }

    /// The smallest valid component: the binary header only.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_compiled_component_is_stored_and_loaded_back() {
        let (engine, dir) = (engine(), private_dir());
        load_or_compile(&engine, EMPTY_COMPONENT, dir.path()).unwrap();
        let path = artifact_path(&engine, EMPTY_COMPONENT, dir.path());
        assert!(load(&engine, &path).is_some());
    }

    #[test]
    fn corrupt_or_truncated_artifacts_are_not_loaded_and_get_replaced() {
        let (engine, dir) = (engine(), private_dir());
        load_or_compile(&engine, EMPTY_COMPONENT, dir.path()).unwrap();
        let path = artifact_path(&engine, EMPTY_COMPONENT, dir.path());
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        for bad in [
            flipped,
            good[..good.len() - 1].to_vec(),
            b"garbage".to_vec(),
            Vec::new(),
        ] {
            fs::write(&path, &bad).unwrap();
            assert!(load(&engine, &path).is_none());
            load_or_compile(&engine, EMPTY_COMPONENT, dir.path()).unwrap();
            assert_eq!(fs::read(&path).unwrap(), good, "rewritten");
        }
    }

    #[test]
    fn artifacts_others_could_have_written_are_not_loaded() {
        use std::os::unix::fs::PermissionsExt;
        let (engine, dir) = (engine(), private_dir());
        load_or_compile(&engine, EMPTY_COMPONENT, dir.path()).unwrap();
        let path = artifact_path(&engine, EMPTY_COMPONENT, dir.path());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(load(&engine, &path).is_none(), "world-writable file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load(&engine, &path).is_none(), "world-writable directory");
    }

    #[test]
    fn nothing_is_written_into_a_directory_others_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let (engine, dir) = (engine(), private_dir());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        load_or_compile(&engine, EMPTY_COMPONENT, dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn another_engine_configuration_uses_another_file() {
        let dir = private_dir();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(
            artifact_path(&engine(), EMPTY_COMPONENT, dir.path()),
            artifact_path(&other, EMPTY_COMPONENT, dir.path())
        );
    }
}
