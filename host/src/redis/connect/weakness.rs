//! Server settings that weaken the lock's guarantees: what [`crate::Runtime::weaknesses`]
//! reports (the CLI's `dlock doctor`), and the eviction check every runtime makes when it
//! connects.

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, Value};

use crate::redis::connection::RedisConnection;

/// A Redis server setting that weakens dlock's guarantees, or one that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Weakness {
    /// The server it was found on, as the runtime names it (without a password); in a
    /// Cluster, each primary's address.
    pub server: String,
    /// The setting as Redis names it (`maxmemory-policy`), or what was read (`INFO
    /// replication`).
    pub setting: String,
    /// Its value, or why it could not be read.
    pub value: String,
    /// What can go wrong because of it.
    pub risk: String,
    /// What to change.
    pub fix: String,
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is {}: {}; {}",
            self.server, self.setting, self.value, self.risk, self.fix
        )
    }
}

/// The settings read, by name (`CONFIG GET` names, and `connected_slaves` from `INFO
/// replication`); a missing one could not be read, with the reason in `unreadable`.
#[derive(Debug, Default)]
struct Settings {
    values: HashMap<String, String>,
    unreadable: Vec<(String, String)>,
}

impl Settings {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// What the eviction check reads when a runtime connects.
const EVICTION: &[&str] = &["maxmemory", "maxmemory-policy"];
/// Everything [`crate::Runtime::weaknesses`] reads with `CONFIG GET`.
const ALL: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "appendonly",
    "appendfsync",
    "save",
    "min-replicas-to-write",
];

/// Whether `policy` lets Redis evict keys that have a TTL (every lock) when memory runs out.
fn evicts_locks(policy: &str) -> bool {
    policy != "noeviction"
}

/// The eviction weakness of one server, if any: a policy that can evict locks (and, for
/// `allkeys-*`, fence counters), with `only_when_bounded`: only when `maxmemory` is set (an
/// unbounded server never evicts).
fn eviction(server: &str, s: &Settings, only_when_bounded: bool) -> Option<Weakness> {
    let policy = s.get("maxmemory-policy")?;
    let maxmemory = s.get("maxmemory").unwrap_or("0");
    if !evicts_locks(policy) || (only_when_bounded && maxmemory == "0") {
        return None;
    }
    let what = if policy.starts_with("allkeys-") {
        "lock keys and fence counters"
    } else {
        "lock keys (they have a TTL)"
    };
    let when = if maxmemory == "0" {
        "once maxmemory is set".to_owned()
    } else {
        format!("when memory reaches maxmemory ({maxmemory} bytes)")
    };
    Some(Weakness {
        server: server.to_owned(),
        setting: "maxmemory-policy".into(),
        value: policy.to_owned(),
        risk: format!(
            "Redis evicts {what} {when}: an evicted lock is free for a second holder while the \
             first still runs"
        ),
        fix: "set maxmemory-policy noeviction (writes then fail when memory is full, and \
              locks are never dropped)"
            .into(),
    })
}

/// Every weakness of one server's settings `s`.
fn judge(server: &str, s: &Settings) -> Vec<Weakness> {
    let mut found: Vec<Weakness> = s
        .unreadable
        .iter()
        .map(|(setting, why)| Weakness {
            server: server.to_owned(),
            setting: setting.clone(),
            value: format!("unreadable ({why})"),
            risk: "this check cannot tell whether it weakens the lock".into(),
            fix: "allow the user +config|get and +info, or check it by hand".into(),
        })
        .collect();
    found.extend(eviction(server, s, false));
    let weakness = |setting: &str, value: &str, risk: &str, fix: &str| Weakness {
        server: server.to_owned(),
        setting: setting.into(),
        value: value.into(),
        risk: risk.into(),
        fix: fix.into(),
    };
    match (s.get("appendonly"), s.get("appendfsync")) {
        (Some("no"), _) => {
            let snapshots = s.get("save").filter(|save| !save.is_empty());
            found.push(weakness(
                "appendonly",
                "no",
                &match snapshots {
                    Some(save) => format!(
                        "a restart reloads the last snapshot (save {save:?}): locks taken since \
                         are gone, and others can take them while their holders still run"
                    ),
                    None => "nothing is persisted: a restart frees every lock while its holder \
                             still runs"
                        .into(),
                },
                "set appendonly yes with appendfsync always, or keep a restarted server out of \
                 service for the longest TTL",
            ));
        }
        (Some("yes"), Some(fsync)) if fsync != "always" => found.push(weakness(
            "appendfsync",
            fsync,
            "a crash loses the writes of the last second or so: a lock granted then is gone \
             after the restart",
            "set appendfsync always, or keep a restarted server out of service for the longest \
             TTL",
        )),
        _ => {}
    }
    let replicas = s
        .get("connected_slaves")
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if replicas > 0 && s.get("min-replicas-to-write") == Some("0") {
        found.push(weakness(
            "min-replicas-to-write",
            "0",
            &format!(
                "{replicas} replica(s), and a write is acknowledged before any has it: a \
                 failover can promote a replica that never saw a lock"
            ),
            "set min-replicas-to-write 1 (and min-replicas-max-lag), and use fencing where a \
             failover must not break exclusion",
        ));
    }
    found
}

/// `CONFIG GET name` on `conn`, once per primary of a Cluster: each server's answer.
async fn config_get(
    conn: &mut RedisConnection,
    name: &str,
    timeout: Duration,
) -> Vec<(Option<String>, Result<String, String>)> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg(name);
    each_primary(conn, cmd, timeout)
        .await
        .into_iter()
        .map(|(server, reply)| {
            let value = reply.and_then(|value| match value {
                Value::Array(items) => match items.as_slice() {
                    [_, value] => text(value).ok_or_else(|| "an odd reply".to_owned()),
                    _ => Err("an unknown setting".to_owned()),
                },
                Value::Map(pairs) => pairs
                    .first()
                    .and_then(|(_, v)| text(v))
                    .ok_or_else(|| "an unknown setting".to_owned()),
                other => Err(format!("an odd reply: {other:?}")),
            });
            (server, value)
        })
        .collect()
}

/// `INFO replication`'s `connected_slaves` on each server.
async fn connected_replicas(
    conn: &mut RedisConnection,
    timeout: Duration,
) -> Vec<(Option<String>, Result<String, String>)> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("replication");
    each_primary(conn, cmd, timeout)
        .await
        .into_iter()
        .map(|(server, reply)| {
            let count = reply.and_then(|info| {
                let info = text(&info).ok_or_else(|| "an odd reply".to_owned())?;
                info.lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .map(|n| n.trim().to_owned())
                    .ok_or_else(|| "no connected_slaves line".to_owned())
            });
            (server, count)
        })
        .collect()
}

/// Runs `cmd` on the server behind `conn`, or on every primary of a Cluster; each answer with
/// the primary's address (`None` for a single server).
async fn each_primary(
    conn: &mut RedisConnection,
    cmd: Cmd,
    timeout: Duration,
) -> Vec<(Option<String>, Result<Value, String>)> {
    let failed = |e: String| vec![(None, Err(e))];
    match conn {
        RedisConnection::Primary(c) => {
            match tokio::time::timeout(timeout, cmd.query_async::<Value>(c)).await {
                Ok(Ok(Value::ServerError(e))) => failed(e.to_string()),
                Ok(Ok(value)) => vec![(None, Ok(value))],
                Ok(Err(e)) => failed(e.to_string()),
                Err(_) => failed("no answer in time".into()),
            }
        }
        RedisConnection::Cluster(c) => {
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            match tokio::time::timeout(timeout, c.route_command(cmd, routing)).await {
                Ok(Ok(Value::Map(answers))) => answers
                    .into_iter()
                    .map(|(server, value)| {
                        let value = match value {
                            Value::ServerError(e) => Err(e.to_string()),
                            value => Ok(value),
                        };
                        (text(&server), value)
                    })
                    .collect(),
                Ok(Ok(other)) => vec![(None, Ok(other))],
                Ok(Err(e)) => failed(e.to_string()),
                Err(_) => failed("no answer in time".into()),
            }
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads `names` (and, with `replication`, the replica count) from the server(s) behind
/// `conn`, keyed by server (`server` for a single one).
async fn read(
    conn: &RedisConnection,
    server: &str,
    names: &[&str],
    replication: bool,
    timeout: Duration,
) -> Vec<(String, Settings)> {
    let mut by_server: Vec<(String, Settings)> = Vec::new();
    let mut note = |at: Option<String>, name: &str, value: Result<String, String>| {
        let at = at.unwrap_or_else(|| server.to_owned());
        let index = match by_server.iter().position(|(s, _)| *s == at) {
            Some(i) => i,
            None => {
                by_server.push((at, Settings::default()));
                by_server.len() - 1
            }
        };
        let settings = &mut by_server[index].1;
        match value {
            Ok(v) => {
                settings.values.insert(name.to_owned(), v);
            }
            Err(why) => settings.unreadable.push((name.to_owned(), why)),
        }
    };
    let configs = futures_util::future::join_all(names.iter().map(|name| {
        let mut conn = conn.clone();
        async move { (*name, config_get(&mut conn, name, timeout).await) }
    }));
    let replicas = async {
        if replication {
            connected_replicas(&mut conn.clone(), timeout).await
        } else {
            Vec::new()
        }
    };
    let (configs, replicas) = futures_util::future::join(configs, replicas).await;
    for (name, answers) in configs {
        for (at, value) in answers {
            note(at, name, value);
        }
    }
    for (at, value) in replicas {
        note(at, "connected_slaves", value);
    }
    by_server
}

/// Every weakness of the server(s) behind `conn` (named `server`; a Cluster's primaries by
/// address), each read bounded by `timeout`.
pub(crate) async fn weaknesses(
    conn: &mut RedisConnection,
    server: &str,
    timeout: Duration,
) -> Vec<Weakness> {
    read(conn, server, ALL, true, timeout)
        .await
        .iter()
        .flat_map(|(at, settings)| judge(at, settings))
        .collect()
}

/// The eviction weakness of the server(s) behind `conn`, only where eviction can happen now
/// (`maxmemory` set); settings that cannot be read (a user without `+config|get`) are
/// skipped.
pub(crate) async fn eviction_risks(
    conn: &mut RedisConnection,
    server: &str,
    timeout: Duration,
) -> Vec<Weakness> {
    read(conn, server, EVICTION, false, timeout)
        .await
        .iter()
        .filter_map(|(at, settings)| eviction(at, settings, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Settings, judge};

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings {
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            unreadable: Vec::new(),
        }
    }

    fn found(pairs: &[(&str, &str)]) -> Vec<String> {
        judge("s", &settings(pairs))
            .into_iter()
            .map(|w| format!("{}={}", w.setting, w.value))
            .collect()
    }

    const SAFE: &[(&str, &str)] = &[
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("save", ""),
        ("min-replicas-to-write", "0"),
        ("connected_slaves", "0"),
    ];

    fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut s: Vec<(&str, &str)> = SAFE.to_vec();
        for (k, v) in changes {
            s.retain(|(name, _)| name != k);
            s.push((k, v));
        }
        s
    }

    #[test]
    fn a_durable_unevicting_server_without_replicas_has_no_weakness() {
        assert!(found(SAFE).is_empty(), "{:?}", found(SAFE));
    }

    #[test]
    fn each_weakening_setting_is_named() {
        for policy in [
            "volatile-ttl",
            "volatile-lru",
            "allkeys-lru",
            "allkeys-random",
        ] {
            assert_eq!(
                found(&with(&[("maxmemory-policy", policy)])),
                [format!("maxmemory-policy={policy}")]
            );
        }
        assert_eq!(
            found(&with(&[("appendonly", "no"), ("save", "3600 1")])),
            ["appendonly=no"]
        );
        assert_eq!(
            found(&with(&[("appendfsync", "everysec")])),
            ["appendfsync=everysec"]
        );
        assert_eq!(
            found(&with(&[("connected_slaves", "2")])),
            ["min-replicas-to-write=0"]
        );
        assert!(
            found(&with(&[
                ("connected_slaves", "2"),
                ("min-replicas-to-write", "1")
            ]))
            .is_empty()
        );
    }

    #[test]
    fn an_unreadable_setting_is_reported_not_taken_as_safe() {
        let mut s = settings(SAFE);
        s.values.remove("appendonly");
        s.unreadable.push(("appendonly".into(), "NOPERM".into()));
        let found = judge("s", &s);
        assert_eq!(found.len(), 1);
        assert!(found[0].value.contains("NOPERM"), "{:?}", found[0]);
    }
}
