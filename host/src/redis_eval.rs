//! The `dlock:lock/redis` import: EVALSHA over a multiplexed, reconnecting connection, under
//! the host's [`Policy`].

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use wasmtime::component::Resource;

use crate::bindings::dlock::lock::redis::{Host, HostScript};
use crate::bindings::{Scalar, Value, WitRedisError};
use crate::policy::{Policy, sha1_hex};
use crate::state::HostState;

/// A script the policy allows: its SHA1 (computed once) and its source (for `SCRIPT LOAD`).
#[derive(Debug)]
pub(crate) struct AllowedScript {
    sha1: String,
    source: Box<str>,
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
        AllowedScript {
            sha1: sha1_hex(source),
            source: source.into(),
        }
    }
}

impl HostScript for HostState {
    async fn load(
        &mut self,
        source: String,
    ) -> wasmtime::Result<Result<Resource<ScriptEntry>, WitRedisError>> {
        self.compute.reset();
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
        self.compute.reset();
        let script = self.table.get(&script)?.0.clone();
        let policy = &self.link.policy;
        self.evals_this_call = self.evals_this_call.saturating_add(1);
        if self.evals_this_call > policy.max_evals_per_call {
            return Ok(Err(WitRedisError::Denied(format!(
                "more than {} Redis calls in one call into the component",
                policy.max_evals_per_call
            ))));
        }
        if let Err(reason) = policy.check_request(&keys, &args) {
            return Ok(Err(WitRedisError::Denied(reason)));
        }
        let timeout = policy.command_timeout;
        let max_reply = policy.max_reply_bytes;
        let reply =
            tokio::time::timeout(timeout, eval(&mut self.conn, &script, &keys, &args)).await;
        Ok(match reply {
            Err(_elapsed) => Err(WitRedisError::Timeout),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(value)) => flatten(value, max_reply),
        })
    }
}

/// EVALSHA, and on `NOSCRIPT` one `SCRIPT LOAD` and one more EVALSHA.
async fn eval(
    conn: &mut ConnectionManager,
    script: &AllowedScript,
    keys: &[String],
    args: &[String],
) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&script.sha1).arg(keys.len()).arg(keys).arg(args);
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            let loaded: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(&*script.source)
                .query_async(conn)
                .await?;
            debug_assert_eq!(loaded, script.sha1);
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// Sorts a Redis failure by what the component should do next.
pub(crate) fn classify(e: &RedisError) -> WitRedisError {
    let text = e.to_string();
    if e.is_timeout() {
        return WitRedisError::Timeout;
    }
    let transient = match e.kind() {
        ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        ),
        // BUSY: another script is running past its time limit; it may end or be killed.
        ErrorKind::Extension => e.code() == Some("BUSY"),
        _ => e.is_connection_dropped() || e.is_connection_refusal(),
    };
    if transient {
        WitRedisError::Unavailable(text)
    } else {
        WitRedisError::Rejected(text)
    }
}

/// Converts a reply into the one-level `value` of the WIT, within `max_bytes`.
pub(crate) fn flatten(value: redis::Value, max_bytes: usize) -> Result<Value, WitRedisError> {
    let mut budget = max_bytes;
    let mut take = |n: usize| -> Result<(), WitRedisError> {
        budget = budget.checked_sub(n).ok_or_else(|| {
            WitRedisError::Denied(format!("reply larger than the {max_bytes}-byte limit"))
        })?;
        Ok(())
    };
    Ok(match value {
        redis::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                take(8)?;
                out.push(scalar(item, &mut take)?);
            }
            Value::Array(out)
        }
        other => match scalar(other, &mut take)? {
            Scalar::Nil => Value::Nil,
            Scalar::Int(n) => Value::Int(n),
            Scalar::Bulk(b) => Value::Bulk(b),
            Scalar::Status(s) => Value::Status(s),
        },
    })
}

fn scalar(
    value: redis::Value,
    take: &mut impl FnMut(usize) -> Result<(), WitRedisError>,
) -> Result<Scalar, WitRedisError> {
    Ok(match value {
        redis::Value::Nil => Scalar::Nil,
        redis::Value::Int(n) => Scalar::Int(n),
        redis::Value::Boolean(b) => Scalar::Int(i64::from(b)),
        redis::Value::BulkString(bytes) => {
            take(bytes.len())?;
            Scalar::Bulk(bytes)
        }
        redis::Value::SimpleString(s) => {
            take(s.len())?;
            Scalar::Status(s)
        }
        redis::Value::Okay => Scalar::Status("OK".to_owned()),
        redis::Value::ServerError(e) => {
            return Err(WitRedisError::Rejected(format!(
                "error inside a reply: {e:?}"
            )));
        }
        other => {
            return Err(WitRedisError::Rejected(format!(
                "a reply of this shape cannot cross into the component: {}",
                shape(&other)
            )));
        }
    })
}

fn shape(value: &redis::Value) -> &'static str {
    match value {
        redis::Value::Array(_) => "nested array",
        redis::Value::Map(_) => "map",
        redis::Value::Set(_) => "set",
        redis::Value::Attribute { .. } => "attribute",
        redis::Value::Push { .. } => "push",
        redis::Value::Double(_) => "double",
        redis::Value::VerbatimString { .. } => "verbatim string",
        redis::Value::BigNumber(_) => "big number",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn scalars_and_flat_arrays_cross_unchanged() {
        assert_eq!(flatten(redis::Value::Int(-2), 64), Ok(Value::Int(-2)));
        assert_eq!(flatten(redis::Value::Nil, 64), Ok(Value::Nil));
        assert_eq!(
            flatten(redis::Value::Okay, 64),
            Ok(Value::Status("OK".into()))
        );
        assert_eq!(flatten(bulk("tok"), 64), Ok(Value::Bulk(b"tok".to_vec())));
        let array = redis::Value::Array(vec![redis::Value::Int(1), bulk("x"), redis::Value::Nil]);
        assert_eq!(
            flatten(array, 64),
            Ok(Value::Array(vec![
                Scalar::Int(1),
                Scalar::Bulk(b"x".to_vec()),
                Scalar::Nil
            ]))
        );
    }

    #[test]
    fn nested_arrays_and_maps_are_rejected_not_truncated() {
        let nested = redis::Value::Array(vec![redis::Value::Array(vec![])]);
        assert!(
            matches!(flatten(nested, 64), Err(WitRedisError::Rejected(m)) if m.contains("nested"))
        );
        let map = redis::Value::Map(vec![(bulk("k"), bulk("v"))]);
        assert!(matches!(flatten(map, 64), Err(WitRedisError::Rejected(m)) if m.contains("map")));
    }

    #[test]
    fn replies_over_the_cap_are_denied() {
        assert!(flatten(bulk(&"x".repeat(64)), 64).is_ok());
        assert!(matches!(
            flatten(bulk(&"x".repeat(65)), 64),
            Err(WitRedisError::Denied(_))
        ));
        // Many small elements add up too.
        let many = redis::Value::Array(vec![redis::Value::Int(0); 9]);
        assert!(matches!(flatten(many, 64), Err(WitRedisError::Denied(_))));
    }

    #[test]
    fn redis_errors_are_classified_by_whether_a_retry_can_help() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(&refused), WitRedisError::Unavailable(_)));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(classify(&timed_out), WitRedisError::Timeout);
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "boom"));
        assert!(matches!(classify(&script), WitRedisError::Rejected(_)));
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(matches!(classify(&loading), WitRedisError::Unavailable(_)));
        let noperm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "acl"));
        assert!(matches!(classify(&noperm), WitRedisError::Rejected(_)));
    }
}
