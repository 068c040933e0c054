//! The `dlock:lock/redis` import: EVALSHA over a multiplexed, reconnecting connection, under
//! the host's [`Policy`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, ServerErrorKind};
use wasmtime::component::Resource;

use crate::bindings::dlock::lock::redis::{Host, HostScript};
use crate::bindings::{Scalar, Value, WitRedisError};
use crate::limits::Role;
use crate::policy::{Policy, sha1_hex};
use crate::reply::{self, Failure, Reply, classify, flatten};
use crate::state::HostState;

/// After this many `redis-eval` timeouts in a row on one connection, the connection is taken
/// for dead (a peer gone without a reset, a firewall that drops packets) and replaced by a
/// fresh one. Three, so that one slow script or a short pause of Redis does not cost a
/// reconnect, while a dead connection costs at most three command timeouts.
pub(crate) const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// A script the policy allows: its SHA1 (computed once), its source (for `SCRIPT LOAD`), and
/// which of the bundled scripts it is, if any.
#[derive(Debug)]
pub(crate) struct AllowedScript {
    sha1: String,
    source: Box<str>,
    role: Option<Role>,
}

/// The host value behind a guest's `script` resource.
#[derive(Debug)]
pub struct ScriptEntry(Arc<AllowedScript>);

/// What every client of one runtime shares for Redis: the connection and the policy.
pub(crate) struct RedisLink {
    /// The current connection, with its generation (counting replacements).
    conn: RwLock<(u64, ConnectionManager)>,
    /// What a replacement connection is made from.
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// `redis-eval` timeouts in a row since the last reply on the current connection.
    timeouts_in_a_row: AtomicU32,
    pub(crate) policy: Policy,
    known: HashMap<Box<str>, Arc<AllowedScript>>,
    /// The longest allowed source: anything longer is refused without being hashed.
    longest_source: usize,
}

impl RedisLink {
    pub(crate) fn new(
        conn: ConnectionManager,
        client: redis::Client,
        config: ConnectionManagerConfig,
        policy: Policy,
    ) -> Self {
        let known: HashMap<Box<str>, Arc<AllowedScript>> = policy
            .known_sources()
            .map(|source| (source.into(), Arc::new(AllowedScript::new(source))))
            .collect();
        let longest_source = known.keys().map(|s| s.len()).max().unwrap_or(0);
        RedisLink {
            conn: RwLock::new((0, conn)),
            client,
            config,
            timeouts_in_a_row: AtomicU32::new(0),
            policy,
            known,
            longest_source,
        }
    }

    /// The current connection (multiplexed, reconnecting; cheap to clone).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.current().1
    }

    /// The current connection and its generation.
    fn current(&self) -> (u64, ConnectionManager) {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes how a call on generation `used` of the connection ended. After
    /// [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a row the connection is replaced (once:
    /// callers that still hold the dead one find a new one in place already). A connection
    /// that times out forever never reports an error of its own, so its manager would never
    /// reconnect by itself.
    fn note_outcome(&self, used: u64, timed_out: bool) {
        if !timed_out {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        if self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 < TIMEOUTS_BEFORE_RECONNECT {
            return;
        }
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        let mut current = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if current.0 == used {
            *current = (used + 1, fresh);
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// The bundled release script, when the policy allows it.
    pub(crate) fn release_script(&self) -> Option<Arc<AllowedScript>> {
        self.known
            .values()
            .find(|s| s.role == Some(Role::Release))
            .cloned()
    }

    /// The allowed script with this source, or `denied`. Every allowed script's source is
    /// known, so admitting is a map lookup; a refused source is hashed only to name it, and
    /// only when it is no longer than the longest allowed one.
    fn admit(&self, source: &str) -> Result<Arc<AllowedScript>, WitRedisError> {
        if let Some(script) = self.known.get(source) {
            return Ok(script.clone());
        }
        Err(WitRedisError::Denied(
            if source.len() > self.longest_source {
                format!(
                    "a script of {} bytes is not in the host's allowlist (it is longer than any \
                 allowed script)",
                    source.len()
                )
            } else {
                format!("script {} is not in the host's allowlist", sha1_hex(source))
            },
        ))
    }
}

impl AllowedScript {
    fn new(source: &str) -> Self {
        let sha1 = sha1_hex(source);
        let role = crate::bundled::SCRIPTS
            .iter()
            .find(|s| s.sha1 == sha1)
            .map(|s| s.role);
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
        let link = self.link.clone();
        let policy = &link.policy;
        let now = std::time::Instant::now();
        if !self.evals.take(now, 1) {
            return Ok(Err(WitRedisError::Denied(format!(
                "more than {} Redis calls in one second",
                policy.max_evals_per_second
            ))));
        }
        if let Err(reason) = policy.check_request(&keys, &args) {
            return Ok(Err(WitRedisError::Denied(reason)));
        }
        if let Some(role) = script.role
            && let Err(reason) = policy.limits.check_role(role, &keys, &args)
        {
            return Ok(Err(WitRedisError::Denied(reason)));
        }
        let bytes: usize = keys.iter().chain(&args).map(String::len).sum();
        if !self.bytes.take(now, bytes as u64) {
            return Ok(Err(WitRedisError::Denied(format!(
                "more than {} bytes sent to Redis in one second",
                policy.max_bytes_per_second
            ))));
        }
        let lock = match (script.role, keys.first(), args.first()) {
            (Some(role @ (Role::Acquire | Role::Release)), Some(key), Some(token)) => {
                Some((role, key, token))
            }
            _ => None,
        };
        if let Some((Role::Acquire, key, token)) = lock {
            self.grants.note(key, token);
        }
        let (generation, mut conn) = link.current();
        let reply = tokio::time::timeout(
            policy.command_timeout,
            eval(&mut conn, &script, &keys, &args),
        )
        .await;
        link.note_outcome(generation, reply.is_err());
        // Only a call that went to Redis ends a run of computation (see `ComputeWatch`): a
        // guest looping on refused calls is still computing.
        self.compute.reset();
        match (lock, &reply) {
            (Some((Role::Acquire, key, token)), Ok(Ok(redis::Value::Int(n)))) if *n <= 0 => {
                self.grants.forget(key, token);
            }
            (Some((Role::Release, key, token)), Ok(Ok(redis::Value::Int(_)))) => {
                self.grants.forget(key, token);
            }
            _ => {}
        }
        Ok(match reply {
            Err(_elapsed) => Err(WitRedisError::Timeout),
            Ok(Err(e)) => Err(classify(&e).into()),
            Ok(Ok(value)) => flatten(value, policy.max_reply_bytes)
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
