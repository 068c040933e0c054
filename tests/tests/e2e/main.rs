//! End-to-end suites: the real component, hosted by wasmtime, against real `redis-server`s
//! (one per test, on a free loopback port). One test binary, so wasmtime is linked once, and
//! the component is compiled once per process.

mod acl;
mod bundle;
mod cancel;
mod cleanup;
mod cluster;
mod conformance;
mod contention;
mod contract;
mod crossruntime;
mod docs;
mod embedder;
mod eviction;
mod expiry;
mod facts;
mod fencing;
mod hostile;
mod interop;
mod modules;
mod noscript;
mod outage;
mod plugins;
mod properties;
mod proxy;
mod quorum;
mod reliability;
mod sandbox;
mod semantics;
mod semaphore;
mod sentinel;
mod tls;
mod tools;
mod unknown;
mod wakeup;
mod watchdog;
