//! Redis replies and failures as the component sees them: replies flattened to one level
//! within a byte budget, failures sorted by whether a retry can help.
//!
//! Self-contained (it depends only on the `redis` crate) so that the fuzz target in `fuzz/`
//! can include it and exercise exactly this code.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// One scalar of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// Nil.
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// A status such as `OK`.
    Status(String),
}

/// A reply, at most one array deep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nil.
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// A status such as `OK`.
    Status(String),
    /// An array of scalars.
    Array(Vec<Scalar>),
}

/// Why a call failed, by what the caller should do next (mirrors `redis.error` in the WIT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Redis unreachable, connection broken, or temporarily unable to serve: retry may help.
    Unavailable(String),
    /// No reply in time; the outcome is unknown.
    Timeout,
    /// Redis refused the call, or the reply cannot cross into the component.
    Rejected(String),
    /// The host's policy refused.
    Denied(String),
}

/// Sorts a Redis failure by what the component should do next.
pub fn classify(e: &RedisError) -> Failure {
    let text = e.to_string();
    if e.is_timeout() {
        return Failure::Timeout;
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
        Failure::Unavailable(text)
    } else {
        Failure::Rejected(text)
    }
}

/// Converts a reply into the one-level `value` of the WIT, within `max_bytes`.
pub fn flatten(value: redis::Value, max_bytes: usize) -> Result<Reply, Failure> {
    let mut budget = max_bytes;
    let mut take = |n: usize| -> Result<(), Failure> {
        budget = budget.checked_sub(n).ok_or_else(|| {
            Failure::Denied(format!("reply larger than the {max_bytes}-byte limit"))
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
            Reply::Array(out)
        }
        other => match scalar(other, &mut take)? {
            Scalar::Nil => Reply::Nil,
            Scalar::Int(n) => Reply::Int(n),
            Scalar::Bulk(b) => Reply::Bulk(b),
            Scalar::Status(s) => Reply::Status(s),
        },
    })
}

fn scalar(
    value: redis::Value,
    take: &mut impl FnMut(usize) -> Result<(), Failure>,
) -> Result<Scalar, Failure> {
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
        redis::Value::Okay => {
            take(2)?;
            Scalar::Status("OK".to_owned())
        }
        redis::Value::ServerError(e) => {
            return Err(Failure::Rejected(format!("error inside a reply: {e:?}")));
        }
        other => {
            return Err(Failure::Rejected(format!(
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
        assert_eq!(flatten(redis::Value::Int(-2), 64), Ok(Reply::Int(-2)));
        assert_eq!(flatten(redis::Value::Nil, 64), Ok(Reply::Nil));
        assert_eq!(
            flatten(redis::Value::Okay, 64),
            Ok(Reply::Status("OK".into()))
        );
        assert_eq!(flatten(bulk("tok"), 64), Ok(Reply::Bulk(b"tok".to_vec())));
        let array = redis::Value::Array(vec![redis::Value::Int(1), bulk("x"), redis::Value::Nil]);
        assert_eq!(
            flatten(array, 64),
            Ok(Reply::Array(vec![
                Scalar::Int(1),
                Scalar::Bulk(b"x".to_vec()),
                Scalar::Nil
            ]))
        );
    }

    #[test]
    fn nested_arrays_and_maps_are_rejected_not_truncated() {
        let nested = redis::Value::Array(vec![redis::Value::Array(vec![])]);
        assert!(matches!(flatten(nested, 64), Err(Failure::Rejected(m)) if m.contains("nested")));
        let map = redis::Value::Map(vec![(bulk("k"), bulk("v"))]);
        assert!(matches!(flatten(map, 64), Err(Failure::Rejected(m)) if m.contains("map")));
    }

    #[test]
    fn ok_statuses_count_against_the_cap_too() {
        // Found by the fuzz target: `+OK` (parsed as `Okay`) was not charged its two bytes.
        let oks = redis::Value::Array(vec![redis::Value::Okay; 7]);
        assert!(flatten(oks.clone(), 70).is_ok());
        assert!(matches!(flatten(oks, 69), Err(Failure::Denied(_))));
    }

    #[test]
    fn replies_over_the_cap_are_denied() {
        assert!(flatten(bulk(&"x".repeat(64)), 64).is_ok());
        assert!(matches!(
            flatten(bulk(&"x".repeat(65)), 64),
            Err(Failure::Denied(_))
        ));
        // Many small elements add up too.
        let many = redis::Value::Array(vec![redis::Value::Int(0); 9]);
        assert!(matches!(flatten(many, 64), Err(Failure::Denied(_))));
    }

    #[test]
    fn redis_errors_are_classified_by_whether_a_retry_can_help() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(&refused), Failure::Unavailable(_)));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(classify(&timed_out), Failure::Timeout);
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "boom"));
        assert!(matches!(classify(&script), Failure::Rejected(_)));
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(matches!(classify(&loading), Failure::Unavailable(_)));
        let noperm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "acl"));
        assert!(matches!(classify(&noperm), Failure::Rejected(_)));
    }
}
