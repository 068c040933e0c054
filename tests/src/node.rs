//! Node workers: the Node package's implementation of the worker protocol
//! (`node/tools/protocol-worker.mjs`), run beside the Rust `worker` binary by `torture
//! --node-workers` and the cross-runtime tests.
//!
//! The Node binary is `$DLOCK_NODE`, else `node` on `PATH`; it must be Node 22 or later
//! (`node/scripts/setup-node.sh` installs one and prints its path). The package is
//! `$DLOCK_NODE_PACKAGE`, else `node/` of this repository, with its dependencies installed and
//! its `gen/` built from the bundled component (`npm ci && npm run build`; the setup script
//! does both).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest Node major version the package supports.
const MIN_NODE_MAJOR: u32 = 22;

/// A way to start Node workers: a launcher script that runs the package's protocol worker
/// with the chosen Node binary, so that [`crate::workers::Worker::spawn`] can start it like the
/// `worker` binary (same arguments and environment). The launcher `exec`s Node, so signals sent
/// to the worker's pid reach Node itself.
#[derive(Debug)]
pub struct NodeWorkers {
    _dir: tempfile::TempDir,
    launcher: PathBuf,
    /// The Node binary.
    pub node: PathBuf,
    /// Its version, as `node --version` prints it.
    pub version: String,
}

impl NodeWorkers {
    /// Finds Node and the package and writes the launcher; the reason when either is missing or
    /// unusable (with what to do about it).
    pub fn find() -> Result<NodeWorkers, String> {
        let node = node_binary()?;
        let version = node_version(&node)?;
        let package = package_dir();
        check_package(&package)?;
        let script = package.join("tools/protocol-worker.mjs");
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary dir: {e}"))?;
        let launcher = dir.path().join("node-worker");
        let quoted = |p: &Path| -> Result<String, String> {
            let s = p
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
            if s.contains('\'') {
                return Err(format!("{s} contains a single quote"));
            }
            Ok(format!("'{s}'"))
        };
        let text = format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            quoted(&node)?,
            quoted(&script)?
        );
        std::fs::write(&launcher, text).map_err(|e| format!("cannot write the launcher: {e}"))?;
        set_executable(&launcher)?;
        Ok(NodeWorkers {
            _dir: dir,
            launcher,
            node,
            version,
        })
    }

    /// The program to give [`crate::workers::Worker::spawn`].
    pub fn program(&self) -> &Path {
        &self.launcher
    }
}

/// Makes the launcher runnable.
fn set_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()))
}

/// `$DLOCK_NODE`, else `node` found on `PATH`.
fn node_binary() -> Result<PathBuf, String> {
    if let Some(node) = std::env::var_os("DLOCK_NODE") {
        return Ok(PathBuf::from(node));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no node on PATH and DLOCK_NODE is not set (node/scripts/setup-node.sh installs Node \
             and prints the DLOCK_NODE to use)"
                .to_owned()
        })
}

/// The version of `node`, which must be at least [`MIN_NODE_MAJOR`].
fn node_version(node: &Path) -> Result<String, String> {
    let out = Command::new(node)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", node.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("{} --version said {version:?}", node.display()))?;
    if major < MIN_NODE_MAJOR {
        return Err(format!(
            "{} is Node {version}; the package needs Node {MIN_NODE_MAJOR} or later \
             (node/scripts/setup-node.sh installs one; point DLOCK_NODE at it)",
            node.display()
        ));
    }
    Ok(version)
}

/// `$DLOCK_NODE_PACKAGE`, else this repository's `node/`.
fn package_dir() -> PathBuf {
    std::env::var_os("DLOCK_NODE_PACKAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../node"))
}

/// The SHA-256 of `bytes`, in lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The package is installed and built from the component the Rust host bundles: its build
/// record names the SHA-256 of `host/bundle/dlock_guest.wasm` (the bytes `dlock_host` bundles),
/// its core modules (`gen/core`, which both builds load) are there, and every one of them is a
/// slice of that component, byte for byte.
fn check_package(package: &Path) -> Result<(), String> {
    let setup = "run node/scripts/setup-node.sh (npm ci && npm run build in node/)";
    if !package.join("node_modules/ioredis").is_dir() {
        return Err(format!(
            "{} has no node_modules: {setup}",
            package.display()
        ));
    }
    let record = std::fs::read_to_string(package.join("gen/component.json"))
        .map_err(|e| format!("{} is not built ({e}): {setup}", package.display()))?;
    let record: serde_json::Value =
        serde_json::from_str(&record).map_err(|e| format!("gen/component.json: {e}"))?;
    let component = dlock_host::bundled::COMPONENT;
    let bundled = sha256_hex(component);
    if record["sha256"].as_str() != Some(bundled.as_str()) {
        return Err(format!(
            "{}/gen was built from a component with SHA-256 {}, not the bundled one ({bundled}): \
             {setup}",
            package.display(),
            record["sha256"]
        ));
    }
    let dir = package.join("gen/core");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}: {setup}", dir.display()))?;
    let mut cores = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            cores += 1;
            let core = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !component.windows(core.len()).any(|w| w == core.as_slice()) {
                return Err(format!(
                    "{} is not part of the bundled component: {setup}",
                    path.display()
                ));
            }
        }
    }
    if cores == 0 {
        return Err(format!(
            "{} has no core module (.wasm): {setup}",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package dir with `node_modules/ioredis`, a build record and a core module of the
    /// bundled component (its first kilobyte) when `with_cores`.
    fn package(record_sha256: &str, with_cores: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/ioredis")).unwrap();
        std::fs::create_dir_all(dir.path().join("gen/core")).unwrap();
        let component = dlock_host::bundled::COMPONENT;
        let record = serde_json::json!({ "sha256": record_sha256, "bytes": component.len() });
        std::fs::write(dir.path().join("gen/component.json"), record.to_string()).unwrap();
        if with_cores {
            let path = dir.path().join("gen/core/component.core.wasm");
            std::fs::write(path, &component[..1024]).unwrap();
        }
        dir
    }

    #[test]
    fn a_package_built_from_the_bundled_component_passes() {
        let dir = package(&sha256_hex(dlock_host::bundled::COMPONENT), true);
        check_package(dir.path()).unwrap();
    }

    #[test]
    fn a_package_built_from_another_component_of_the_same_size_fails() {
        let dir = package(&"0".repeat(64), true);
        let e = check_package(dir.path()).unwrap_err();
        assert!(e.contains("not the bundled one"), "{e}");
    }

    #[test]
    fn a_package_without_core_modules_fails() {
        let dir = package(&sha256_hex(dlock_host::bundled::COMPONENT), false);
        let e = check_package(dir.path()).unwrap_err();
        assert!(e.contains("no core module"), "{e}");
    }
}
