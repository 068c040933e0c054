//! The host side of `redis-eval` and `script.load`: admission and checks under the
//! [`Policy`], then EVALSHA (EVAL after `NOSCRIPT`) under the command timeout.

use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, ServerErrorKind};
use tracing::Instrument;
use wasmtime::component::Resource;

use super::RedisView;
use super::link::AllowedScript;
use super::reply::{self, Failure, Reply, classify, flatten};
use crate::bindings::dlock::lock::redis::{Host, HostScript, Wake};
use crate::bindings::{Scalar, Value, WitRedisError};
use crate::bundled::BundledScript;
use crate::observe::{self, Denial};

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
            Err(denied) => {
                observe::denied(Denial::Script);
                Ok(Err(WitRedisError::Denied(denied)))
            }
        }
    }

    async fn drop(&mut self, script: Resource<ScriptEntry>) -> wasmtime::Result<()> {
        self.table.delete(script)?;
        Ok(())
    }
}

/// A refusal by the policy, counted.
fn denied(why: Denial, reason: String) -> wasmtime::Result<Result<Value, WitRedisError>> {
    observe::denied(why);
    Ok(Err(WitRedisError::Denied(reason)))
}

impl Host for RedisView<'_> {
    async fn wait_for_release(
        &mut self,
        key: String,
        timeout_ms: u64,
        listen: bool,
    ) -> wasmtime::Result<Result<Wake, WitRedisError>> {
        Ok(super::wait::wait_for_release(self, key, timeout_ms, listen).await)
    }

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
            let reason = format!(
                "more than {} Redis calls in one second",
                policy.max_evals_per_second
            );
            return denied(Denial::Rate, reason);
        }
        if let Err(reason) = policy.check_request(&keys, &args) {
            return denied(Denial::Policy, reason);
        }
        if let Some(role) = script.role
            && let Err(reason) = policy.limits.check_role(role, &keys, &args)
        {
            return denied(Denial::Policy, reason);
        }
        let bytes: usize = keys.iter().chain(&args).map(String::len).sum();
        if !ctx.bytes.take(now, bytes as u64) {
            let reason = format!(
                "more than {} bytes sent to Redis in one second",
                policy.max_bytes_per_second
            );
            return denied(Denial::Rate, reason);
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
            ctx.acquire_attempts += 1;
        }
        let (generation, mut conn) = link.current();
        let span = observe::redis_span(
            "EVALSHA",
            observe::script_name(script.role),
            link.server(),
        );
        let reply = tokio::time::timeout(
            policy.command_timeout,
            eval(&mut conn, &script, &keys, &args),
        )
        .instrument(span.clone())
        .await;
        observe::redis_call("EVALSHA", script.role, now.elapsed());
        link.note_outcome(generation, reply.is_err());
        ctx.calls += 1;
        match (lock, &reply) {
            (Some((BundledScript::Acquire, key, token)), Ok(Ok(reply))) if !acquired(reply) => {
                ctx.grants.forget(key, token);
                if busy(reply) {
                    observe::busy();
                }
            }
            (Some((BundledScript::Release, key, token)), Ok(Ok(redis::Value::Int(_)))) => {
                ctx.grants.forget(key, token);
            }
            _ => {}
        }
        let outcome = match reply {
            Err(_elapsed) => Err(WitRedisError::Timeout),
            Ok(Err(e)) => Err(classify(&e).into()),
            Ok(Ok(value)) => flatten(value, policy.max_reply_bytes)
                .map(Value::from)
                .map_err(WitRedisError::from),
        };
        if let Err(e) = &outcome {
            span.record(
                "error.type",
                match e {
                    WitRedisError::Timeout => "timeout",
                    WitRedisError::Unavailable(_) => "unavailable",
                    _ => "rejected",
                },
            );
        }
        Ok(outcome)
    }
}

/// Whether a reply of the bundled acquire script granted the lock (a positive integer).
fn acquired(reply: &redis::Value) -> bool {
    matches!(reply, redis::Value::Int(n) if *n > 0)
}

/// Whether a reply of the bundled acquire script found the lock held (0, or `{0, pttl}`).
fn busy(reply: &redis::Value) -> bool {
    match reply {
        redis::Value::Int(0) => true,
        redis::Value::Array(items) => matches!(items.first(), Some(redis::Value::Int(0))),
        _ => false,
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
