//! The `dlock:lock/redis` import: EVALSHA over a multiplexed, reconnecting connection, under
//! the host's [`Policy`].

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, ServerErrorKind};
use wasmtime::component::Resource;

use crate::bindings::dlock::lock::redis::{Host, HostScript};
use crate::bindings::{Scalar, Value, WitRedisError};
use crate::policy::{Policy, sha1_hex};
use crate::reply::{self, Failure, Reply, classify, flatten};
use crate::state::HostState;

/// A script the policy allows: its SHA1 (computed once), its source (for `SCRIPT LOAD`), and
/// which of the bundled scripts it is, if any.
#[derive(Debug)]
pub(crate) struct AllowedScript {
    sha1: String,
    source: Box<str>,
    role: Option<&'static str>,
}

/// The host value behind a guest's `script` resource.
#[derive(Debug)]
pub struct ScriptEntry(Arc<AllowedScript>);

/// What every client of one runtime shares for Redis: the connection and the policy.
pub(crate) struct RedisLink {
    pub(crate) conn: ConnectionManager,
    pub(crate) policy: Policy,
    known: HashMap<Box<str>, Arc<AllowedScript>>,
}

impl RedisLink {
    pub(crate) fn new(conn: ConnectionManager, policy: Policy) -> Self {
        let known = policy
            .known_sources()
            .map(|source| (source.into(), Arc::new(AllowedScript::new(source))))
            .collect();
        RedisLink {
            conn,
            policy,
            known,
        }
    }

    /// The bundled release script, when the policy allows it.
    pub(crate) fn release_script(&self) -> Option<Arc<AllowedScript>> {
        self.known
            .values()
            .find(|s| s.role == Some("release"))
            .cloned()
    }

    /// The allowed script with this source, or `denied`. Known sources cost a map lookup;
    /// others are hashed once here and checked against the allowlist.
    fn admit(&self, source: &str) -> Result<Arc<AllowedScript>, WitRedisError> {
        if let Some(script) = self.known.get(source) {
            return Ok(script.clone());
        }
        let script = AllowedScript::new(source);
        if self.policy.allows(&script.sha1) {
            Ok(Arc::new(script))
        } else {
            Err(WitRedisError::Denied(format!(
                "script {} is not in the host's allowlist",
                script.sha1
            )))
        }
    }
}

impl AllowedScript {
    fn new(source: &str) -> Self {
        let sha1 = sha1_hex(source);
        let role = crate::bundled::SCRIPTS
            .iter()
            .find(|s| s.sha1 == sha1)
            .map(|s| s.name);
        AllowedScript {
            sha1,
            source: source.into(),
            role,
        }
    }
}

impl HostScript for HostState {
    async fn load(
        &mut self,
        source: String,
    ) -> wasmtime::Result<Result<Resource<ScriptEntry>, WitRedisError>> {
        match self.link.admit(&source) {
            Ok(script) => Ok(Ok(self.table.push(ScriptEntry(script))?)),
            Err(denied) => Ok(Err(denied)),
        }
    }

    async fn drop(&mut self, script: Resource<ScriptEntry>) -> wasmtime::Result<()> {
        self.table.delete(script)?;
        Ok(())
    }
}

impl Host for HostState {
    async fn redis_eval(
        &mut self,
        script: Resource<ScriptEntry>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<Value, WitRedisError>> {
        let script = self.table.get(&script)?.0.clone();
        let policy = &self.link.policy;
        if !self
            .evals
            .admit(std::time::Instant::now(), policy.max_evals_per_second)
        {
            return Ok(Err(WitRedisError::Denied(format!(
                "more than {} Redis calls in one second",
                policy.max_evals_per_second
            ))));
        }
        if let Err(reason) = policy.check_request(&keys, &args) {
            return Ok(Err(WitRedisError::Denied(reason)));
        }
        let timeout = policy.command_timeout;
        let max_reply = policy.max_reply_bytes;
        let lock = match (script.role, keys.first(), args.first()) {
            (Some(role @ ("acquire" | "release")), Some(key), Some(token)) => {
                Some((role, key, token))
            }
            _ => None,
        };
        if let Some(("acquire", key, token)) = lock {
            self.grants.note(key, token);
        }
        let reply =
            tokio::time::timeout(timeout, eval(&mut self.conn, &script, &keys, &args)).await;
        // Only a call that went to Redis ends a run of computation (see `ComputeWatch`): a
        // guest looping on refused calls is still computing.
        self.compute.reset();
        match (lock, &reply) {
            (Some(("acquire", key, token)), Ok(Ok(redis::Value::Int(0))))
            | (Some(("release", key, token)), Ok(Ok(redis::Value::Int(_)))) => {
                self.grants.forget(key, token);
            }
            _ => {}
        }
        Ok(match reply {
            Err(_elapsed) => Err(WitRedisError::Timeout),
            Ok(Err(e)) => Err(classify(&e).into()),
            Ok(Ok(value)) => flatten(value, max_reply)
                .map(Value::from)
                .map_err(WitRedisError::from),
        })
    }
}

/// EVALSHA, and on `NOSCRIPT` one EVAL of the source, which runs the script and caches it in
/// one step (a `SCRIPT LOAD` then EVALSHA could lose the script to a `SCRIPT FLUSH` between
/// the two).
pub(crate) async fn eval(
    conn: &mut ConnectionManager,
    script: &AllowedScript,
    keys: &[String],
    args: &[String],
) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&script.sha1).arg(keys.len()).arg(keys).arg(args);
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            redis::cmd("EVAL")
                .arg(&*script.source)
                .arg(keys.len())
                .arg(keys)
                .arg(args)
                .query_async(conn)
                .await
        }
        other => other,
    }
}

impl From<Failure> for WitRedisError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable(m) => WitRedisError::Unavailable(m),
            Failure::Timeout => WitRedisError::Timeout,
            Failure::Rejected(m) => WitRedisError::Rejected(m),
            Failure::Denied(m) => WitRedisError::Denied(m),
        }
    }
}

impl From<reply::Scalar> for Scalar {
    fn from(s: reply::Scalar) -> Self {
        match s {
            reply::Scalar::Nil => Scalar::Nil,
            reply::Scalar::Int(n) => Scalar::Int(n),
            reply::Scalar::Bulk(b) => Scalar::Bulk(b),
            reply::Scalar::Status(s) => Scalar::Status(s),
        }
    }
}

impl From<Reply> for Value {
    fn from(r: Reply) -> Self {
        match r {
            Reply::Nil => Value::Nil,
            Reply::Int(n) => Value::Int(n),
            Reply::Bulk(b) => Value::Bulk(b),
            Reply::Status(s) => Value::Status(s),
            Reply::Array(items) => Value::Array(items.into_iter().map(Scalar::from).collect()),
        }
    }
}
