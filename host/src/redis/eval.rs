//! The host side of `redis-eval` and `script.load`: admission and checks under the
//! [`Policy`], then EVALSHA (EVAL after `NOSCRIPT`) under the command timeout.

use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, ServerErrorKind};
use wasmtime::component::Resource;

use super::RedisView;
use super::link::AllowedScript;
use super::reply::{self, Failure, Reply, classify, flatten};
use crate::bindings::dlock::lock::redis::{Host, HostScript};
use crate::bindings::{Scalar, Value, WitRedisError};
use crate::bundled::BundledScript;

/// The host value behind a guest's `script` resource.
#[derive(Debug)]
pub struct ScriptEntry(pub(super) Arc<AllowedScript>);

impl HostScript for RedisView<'_> {
    async fn load(
        &mut self,
        source: String,
    ) -> wasmtime::Result<Result<Resource<ScriptEntry>, WitRedisError>> {
        match self.ctx.link.admit(&source) {
            Ok(script) => Ok(Ok(self.table.push(ScriptEntry(script))?)),
            Err(denied) => Ok(Err(WitRedisError::Denied(denied))),
        }
    }

    async fn drop(&mut self, script: Resource<ScriptEntry>) -> wasmtime::Result<()> {
        self.table.delete(script)?;
        Ok(())
    }
}

impl Host for RedisView<'_> {
    async fn redis_eval(
        &mut self,
        script: Resource<ScriptEntry>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<Value, WitRedisError>> {
        let script = self.table.get(&script)?.0.clone();
        let ctx = &mut *self.ctx;
        let link = ctx.link.clone();
        let policy = &link.policy;
        let now = Instant::now();
        if !ctx.admit_eval(now) {
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
        if !ctx.bytes.take(now, bytes as u64) {
            return Ok(Err(WitRedisError::Denied(format!(
                "more than {} bytes sent to Redis in one second",
                policy.max_bytes_per_second
            ))));
        }
        let lock = match (script.role, keys.first(), args.first()) {
            (
                Some(role @ (BundledScript::Acquire | BundledScript::Release)),
                Some(key),
                Some(token),
            ) => Some((role, key, token)),
            _ => None,
        };
        if let Some((BundledScript::Acquire, key, token)) = lock {
            ctx.grants.note(key, token);
        }
        let (generation, mut conn) = link.current();
        let reply = tokio::time::timeout(
            policy.command_timeout,
            eval(&mut conn, &script, &keys, &args),
        )
        .await;
        link.note_outcome(generation, reply.is_err());
        ctx.calls += 1;
        match (lock, &reply) {
            (Some((BundledScript::Acquire, key, token)), Ok(Ok(redis::Value::Int(n))))
                if *n <= 0 =>
            {
                ctx.grants.forget(key, token);
            }
            (Some((BundledScript::Release, key, token)), Ok(Ok(redis::Value::Int(_)))) => {
                ctx.grants.forget(key, token);
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
