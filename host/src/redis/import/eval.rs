//! The host side of `redis-eval` and `script.load`: admission and checks under the
//! [`Policy`], then EVALSHA (EVAL after `NOSCRIPT`) under the command timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::cluster_routing::Slot;
use redis::{ErrorKind, ServerErrorKind};
use tracing::Instrument;
use wasmtime::component::Resource;

use crate::bundled::BundledScript;
use crate::observe::{self, Denial};
use crate::redis::link::AllowedScript;
use crate::redis::node::{Node, Outcome};
use crate::redis::reply::{self, Failure, Reply, classify, flatten};
use crate::redis::wit::dlock::lock::redis::{Host, HostScript, Wake};
use crate::redis::wit::{Scalar, Value, WitRedisError};
use crate::redis::{RedisView, Taken};

/// The host value behind a guest's `script` resource.
#[derive(Debug)]
pub struct ScriptEntry(pub(in crate::redis) Arc<AllowedScript>);

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

/// A bundled acquire or release script (the lock's or the semaphore's) with its key and token:
/// a lock call that `grants.rs` keeps track of.
type LockCall<'a> = Option<(BundledScript, &'a String, &'a String)>;

/// Admits a call that will reach `nodes` stores: the rate buckets (one call and its bytes per
/// store), the policy's caps and namespace, one hash slot in a Redis Cluster, and the bundled
/// script's argument shape. An acquire is noted (and counted) before it is sent. Otherwise the
/// refusal, counted by why.
fn admit<'a>(
    ctx: &mut crate::redis::RedisCtx,
    script: &AllowedScript,
    keys: &'a [String],
    args: &'a [String],
) -> Result<LockCall<'a>, WitRedisError> {
    let deny = |why: Denial, reason: String| {
        observe::denied(why);
        WitRedisError::Denied(reason)
    };
    let link = ctx.link.clone();
    let policy = &link.policy;
    let nodes = link.nodes().len() as u64;
    let now = Instant::now();
    if !ctx.admit_eval(now, nodes) {
        let reason = format!(
            "more than {} Redis calls in one second",
            policy.max_evals_per_second
        );
        return Err(deny(Denial::Rate, reason));
    }
    policy
        .check_request(keys, args)
        .map_err(|reason| deny(Denial::Policy, reason))?;
    if link.stores.cluster {
        check_one_slot(keys).map_err(|reason| deny(Denial::Policy, reason))?;
    }
    if let Some(role) = script.role {
        policy
            .limits
            .check_role(role, keys, args)
            .map_err(|reason| deny(Denial::Policy, reason))?;
    }
    let bytes: usize = keys.iter().chain(args).map(String::len).sum();
    if !ctx.bytes.take(now, bytes as u64 * nodes) {
        let reason = format!(
            "more than {} bytes sent to Redis in one second",
            policy.max_bytes_per_second
        );
        return Err(deny(Denial::Rate, reason));
    }
    let lock = match (script.role, keys.first(), args.first()) {
        (
            Some(
                role @ (BundledScript::Acquire
                | BundledScript::Release
                | BundledScript::SemaphoreAcquire
                | BundledScript::SemaphoreRelease),
            ),
            Some(key),
            Some(token),
        ) => Some((role, key, token)),
        _ => None,
    };
    let taken = match lock {
        Some((BundledScript::Acquire, ..)) => Some(Taken::Lock),
        // The shape was checked: the fourth argument is the count, 1 to MAX_PERMITS.
        Some((BundledScript::SemaphoreAcquire, ..)) => args
            .get(3)
            .and_then(|count| count.parse().ok())
            .map(Taken::Permits),
        _ => None,
    };
    if let (Some((_, key, token)), Some(taken)) = (lock, taken) {
        ctx.grants.note(key, token, taken);
        ctx.acquire_attempts += 1;
    }
    Ok(lock)
}

/// In a Redis Cluster a script runs on one node: its keys must hash to one slot. Redis would
/// refuse anything else with `CROSSSLOT`; this says why, before anything is sent.
fn check_one_slot(keys: &[String]) -> Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        return Ok(());
    };
    let slot = Slot::for_key(first);
    match rest.iter().find(|key| Slot::for_key(key) != slot) {
        None => Ok(()),
        Some(other) => Err(format!(
            "the keys {first:?} and {other:?} hash to different Redis Cluster slots: a \
             script's keys must share one slot (give them a common hash tag, such as \
             {{name}})"
        )),
    }
}

/// Forgets a noted lock once every store's reply shows it was not taken (a busy acquire) or
/// is gone (a release, whatever it found); counts a busy acquire.
fn settle(
    grants: &crate::redis::Grants,
    lock: LockCall<'_>,
    replies: &[Result<redis::Value, Failure>],
) {
    let answered = |f: fn(&redis::Value) -> bool| {
        replies
            .iter()
            .all(|reply| matches!(reply, Ok(value) if f(value)))
    };
    match lock {
        Some((BundledScript::Acquire | BundledScript::SemaphoreAcquire, key, token))
            if answered(|v| !acquired(v)) =>
        {
            grants.forget(key, token);
            if replies.iter().any(|r| matches!(r, Ok(v) if busy(v))) {
                observe::busy();
            }
        }
        Some((BundledScript::Release | BundledScript::SemaphoreRelease, key, token))
            if answered(|v| matches!(v, redis::Value::Int(_))) =>
        {
            grants.forget(key, token)
        }
        _ => {}
    }
}

/// Whether a reply of a bundled acquire script granted the lock or permits (a positive
/// integer).
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

/// Runs `script` on one store under `timeout`, in a span of its own and timed, and tells the
/// store how it went.
pub(crate) async fn run(
    node: &Arc<Node>,
    script: &AllowedScript,
    keys: &[String],
    args: &[String],
    timeout: Duration,
) -> Result<redis::Value, Failure> {
    let (generation, mut conn) = node.current();
    let span = observe::redis_span("EVALSHA", observe::script_name(script.role), node.server());
    let started = Instant::now();
    let reply = tokio::time::timeout(timeout, eval(&mut conn, script, keys, args))
        .instrument(span.clone())
        .await;
    observe::redis_call("EVALSHA", script.role, started.elapsed());
    let (outcome, result) = match reply {
        Err(_elapsed) => (Outcome::TimedOut, Err(Failure::Timeout)),
        Ok(Ok(value)) => (Outcome::Answered, Ok(value)),
        Ok(Err(e)) => match classify(&e) {
            Failure::Timeout => (Outcome::TimedOut, Err(Failure::Timeout)),
            f @ Failure::Unavailable(_) => (Outcome::Unavailable, Err(f)),
            f => (Outcome::Answered, Err(f)),
        },
    };
    if let Err(f) = &result {
        span.record(
            "error.type",
            match f {
                Failure::Timeout => "timeout",
                Failure::Unavailable(_) => "unavailable",
                _ => "rejected",
            },
        );
    }
    node.note_outcome(generation, outcome);
    result
}

fn to_wit(
    reply: Result<redis::Value, Failure>,
    max_reply_bytes: usize,
) -> Result<Value, WitRedisError> {
    reply
        .and_then(|value| flatten(value, max_reply_bytes))
        .map(Value::from)
        .map_err(WitRedisError::from)
}

impl Host for RedisView<'_> {
    async fn wait_for_release(
        &mut self,
        key: String,
        timeout_ms: u64,
        listen: bool,
    ) -> wasmtime::Result<Result<Wake, WitRedisError>> {
        Ok(crate::redis::wait::wait_for_release(self, key, timeout_ms, listen).await)
    }

    async fn redis_eval(
        &mut self,
        script: Resource<ScriptEntry>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<Value, WitRedisError>> {
        self.eval_one(&script, &keys, &args).await
    }

    async fn node_count(&mut self) -> wasmtime::Result<u32> {
        Ok(u32::try_from(self.ctx.link.nodes().len()).unwrap_or(u32::MAX))
    }

    async fn redis_eval_all(
        &mut self,
        script: Resource<ScriptEntry>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Result<Value, WitRedisError>>, WitRedisError>> {
        self.eval_all(&script, &keys, &args).await
    }
}

impl RedisView<'_> {
    /// `redis-eval`: `script` with `keys` and `args` on the one store, under the policy.
    pub(crate) async fn eval_one(
        &mut self,
        script: &Resource<ScriptEntry>,
        keys: &[String],
        args: &[String],
    ) -> wasmtime::Result<Result<Value, WitRedisError>> {
        let script = self.table.get(script)?.0.clone();
        let ctx = &mut *self.ctx;
        let link = ctx.link.clone();
        let [node] = link.nodes() else {
            observe::denied(Denial::Policy);
            return Ok(Err(WitRedisError::Denied(format!(
                "this host runs {} independent Redis primaries (quorum mode), where one of \
                 them alone holds no lock: use redis-eval-all",
                link.nodes().len()
            ))));
        };
        let lock = match admit(ctx, &script, keys, args) {
            Ok(lock) => lock,
            Err(denied) => return Ok(Err(denied)),
        };
        let timeout = link.policy.command_timeout;
        let reply = run(node, &script, keys, args, timeout).await;
        ctx.calls += 1;
        settle(&ctx.grants, lock, std::slice::from_ref(&reply));
        Ok(to_wit(reply, link.policy.max_reply_bytes))
    }

    /// `redis-eval-all`: `script` with `keys` and `args` on every store, under the policy.
    pub(crate) async fn eval_all(
        &mut self,
        script: &Resource<ScriptEntry>,
        keys: &[String],
        args: &[String],
    ) -> wasmtime::Result<Result<Vec<Result<Value, WitRedisError>>, WitRedisError>> {
        let script = self.table.get(script)?.0.clone();
        let ctx = &mut *self.ctx;
        let link = ctx.link.clone();
        let lock = match admit(ctx, &script, keys, args) {
            Ok(lock) => lock,
            Err(denied) => return Ok(Err(denied)),
        };
        let timeout = link.policy.command_timeout;
        let replies = futures_util::future::join_all(
            link.nodes()
                .iter()
                .map(|node| run(node, &script, keys, args, timeout)),
        )
        .await;
        ctx.calls += 1;
        settle(&ctx.grants, lock, &replies);
        let max = link.policy.max_reply_bytes;
        Ok(Ok(replies.into_iter().map(|r| to_wit(r, max)).collect()))
    }
}

/// EVALSHA, and on `NOSCRIPT` one EVAL of the source, which runs the script and caches it in
/// one step (a `SCRIPT LOAD` then EVALSHA could lose the script to a `SCRIPT FLUSH` between
/// the two).
pub(crate) async fn eval(
    conn: &mut (impl ConnectionLike + Send),
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

#[cfg(test)]
mod tests {
    use super::check_one_slot;

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_scripts_keys_must_share_one_cluster_slot() {
        assert!(check_one_slot(&keys(&["job", "{job}:fence"])).is_ok());
        assert!(check_one_slot(&keys(&["app:{j}", "app:{j}::fence"])).is_ok());
        assert!(check_one_slot(&keys(&[])).is_ok());
        let reason = check_one_slot(&keys(&["job", "other"])).unwrap_err();
        assert!(reason.contains("different Redis Cluster slots"), "{reason}");
        assert!(reason.contains("hash tag"), "{reason}");
    }
}
