//! End-to-end suites: the real component, hosted by wasmtime, against real `redis-server`s.
//! One test binary (one link of wasmtime); the component is compiled once per process.

mod semantics;
