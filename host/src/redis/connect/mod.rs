//! Connections and topologies: where Redis is ([`topology`], [`sentinel`], [`url`]), the
//! stores every context of a runtime shares ([`link`], [`node`], [`connection`]), the
//! connections of their own that waits block on ([`blocking`]), TLS ([`tls`]) and the server
//! settings that weaken the lock ([`weakness`]).

pub(crate) mod blocking;
pub(crate) mod connection;
pub(crate) mod link;
pub(crate) mod node;
pub(crate) mod sentinel;
pub(crate) mod tls;
pub(crate) mod topology;
pub(crate) mod url;
pub(crate) mod weakness;
