//! Composing a plugin with the lock component ahead of time: the plugin's `dlock:lock/lock`
//! import is satisfied by the lock component's export, so the result carries the lock logic
//! inside and imports `dlock:lock/redis` (and WASI clocks, poll and random) instead. Any host
//! that provides those runs it; this crate's through [`crate::redis::add_to_linker`].

use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions, PlugError};

use crate::error::{Error, Result};

/// The plugin component `plugin` with its `dlock:lock/lock` import satisfied by the bundled
/// lock component ([`crate::bundled::COMPONENT`]). Fails with [`Error::Compose`] when either
/// is not a component, or the plugin does not import a `lock` interface the lock component's
/// export can satisfy.
pub fn compose(plugin: &[u8]) -> Result<Vec<u8>> {
    compose_with(crate::bundled::COMPONENT, plugin)
}

/// Like [`compose`], with `lock_component` (a component of the `dlock` world) in place of the
/// bundled one.
pub fn compose_with(lock_component: &[u8], plugin: &[u8]) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| Error::Compose(format!("{e:#}"));
    let mut graph = CompositionGraph::new();
    let lock = Package::from_bytes(
        "dlock:lock-component",
        None,
        lock_component,
        graph.types_mut(),
    )
    .map_err(|e| fail(&format!("the lock component: {e:#}")))?;
    let lock = graph.register_package(lock).map_err(|e| fail(&e))?;
    let socket = Package::from_bytes("dlock:plugin", None, plugin, graph.types_mut())
        .map_err(|e| fail(&format!("the plugin: {e:#}")))?;
    let socket = graph.register_package(socket).map_err(|e| fail(&e))?;
    wac_graph::plug(&mut graph, vec![lock], socket).map_err(|e| match e {
        PlugError::NoPlugHappened => Error::Compose(
            "the plugin does not import dlock:lock/lock (the lock-user world), or imports a \
             version the lock component does not export"
                .into(),
        ),
        other => fail(&other),
    })?;
    graph.encode(EncodeOptions::default()).map_err(|e| fail(&e))
}
