//! `status`: one key's state, or the locks under a prefix, once or refreshed live (`--watch`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use dlock_host::KeyState;
use dlock_host::RedisConnection;
use dlock_host::contract::{Companion, MAX_PERMITS, companion_key, companion_of};
use redis::ErrorKind;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::output::outln;
use super::{CliResult, Ctx, EXIT_OK, EXIT_REDIS, Failure, epoch_ms};

/// The arguments of `dlock status`.
#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    /// The lock's key. [default: every lock under --prefix]
    #[arg(value_parser = super::key)]
    key: Option<String>,
    /// Refresh the view every --interval until Ctrl-C (or --count refreshes).
    #[arg(long)]
    watch: bool,
    /// How often --watch refreshes.
    #[arg(long, value_parser = super::duration::parse, default_value = "1s")]
    interval: Duration,
    /// With --watch: stop after this many refreshes. [default: until Ctrl-C]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Show at most this many locks (the first by key).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// KEY is a counting semaphore of N slots (`dlock run --slots N`): show how many are taken
    /// and free (`2 of 3 slots taken, 1 free`), and when the first taken one ends.
    #[arg(long, value_name = "N", requires = "key", conflicts_with = "watch", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PERMITS)))]
    slots: Option<u32>,
}

impl StatusArgs {
    /// The key, when one was given.
    pub(super) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// One lock as `status` shows it.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    /// The key without the prefix.
    key: String,
    /// The holder's token.
    token: String,
    /// Milliseconds left; `None` without an expiry.
    ttl_ms: Option<i64>,
    /// The fencing token of the key's last acquisition, when it has one.
    fence: Option<i64>,
}

pub(super) async fn status(ctx: &Ctx, args: StatusArgs) -> CliResult<u8> {
    match (&args.key, args.watch, args.slots) {
        (Some(key), false, Some(slots)) => slots_once(ctx, key, slots).await,
        (Some(key), false, None) => once(ctx, key).await,
        _ => watch(ctx, &args).await,
    }
}

/// `status KEY --slots N`: the semaphore's permits, through the lock component.
async fn slots_once(ctx: &Ctx, key: &str, slots: u32) -> CliResult<u8> {
    let client = ctx.client(false).await?;
    let state = client
        .semaphore(key, slots)
        .state()
        .await
        .map_err(|e| ctx.fail(e))?;
    let free = slots.saturating_sub(state.held);
    let first_ms = state.first_ends_in.map(|d| d.as_millis());
    if ctx.json {
        outln!(
            "{}",
            json!({ "key": key, "slots": slots, "taken": state.held, "free": free, "first_ends_in_ms": first_ms })
        )?;
    } else {
        let ends = first_ms.map_or(String::new(), |ms| format!("; the first ends in {ms}ms"));
        outln!("{} of {slots} slots taken, {free} free{ends}", state.held)?;
    }
    Ok(EXIT_OK)
}

/// `status KEY`: through the lock component, as every lock operation.
async fn once(ctx: &Ctx, key: &str) -> CliResult<u8> {
    let client = ctx.client(false).await?;
    let state = client.key_state(key).await.map_err(|e| ctx.fail(e))?;
    let (locked, ttl_ms, text) = match state {
        KeyState::Unlocked => (false, None, "unlocked".to_owned()),
        KeyState::Expiring(left) => {
            let ms = left.as_millis();
            (true, Some(ms), format!("locked {ms}ms"))
        }
        KeyState::Persistent => (true, None, "locked (no expiry)".to_owned()),
        other => (true, None, format!("locked ({other:?})")),
    };
    if ctx.json {
        outln!(
            "{}",
            json!({ "key": key, "locked": locked, "ttl_ms": ttl_ms })
        )?;
    } else {
        outln!("{text}")?;
    }
    Ok(EXIT_OK)
}

/// The list, once or every interval.
async fn watch(ctx: &Ctx, args: &StatusArgs) -> CliResult<u8> {
    let mut conns = ctx.runtime.connections();
    let live = args.watch && !ctx.json && std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(EXIT_OK),
        }
        let rows = rows(ctx, &mut conns, args).await?;
        let now_ms = epoch_ms(std::time::SystemTime::now());
        if ctx.json {
            outln!("{}", to_json(&ctx.prefix, now_ms, &rows))?;
        } else {
            if live {
                // Clear the screen and go home: the table redraws in place.
                outln!("\x1b[2J\x1b[H{}", header(ctx, args, rows.len()))?;
            } else if args.watch {
                outln!("{}", header(ctx, args, rows.len()))?;
            }
            outln!("{}", table(&rows))?;
        }
        shown += 1;
        if !args.watch || args.count.is_some_and(|n| shown >= n) {
            return Ok(EXIT_OK);
        }
    }
}

/// The rows to show: the key's, or the locks under the prefix. In quorum mode, what a majority
/// of the primaries hold (each primary's first `--limit` by key), and an error unless a
/// majority answered.
async fn rows(ctx: &Ctx, conns: &mut [RedisConnection], args: &StatusArgs) -> CliResult<Vec<Row>> {
    let timeout = ctx.runtime.policy().command_timeout();
    let mut answers = Vec::with_capacity(conns.len());
    let mut failure = None;
    for conn in conns.iter_mut() {
        let answer = match &args.key {
            Some(key) => read(conn, &ctx.prefix, std::slice::from_ref(key), timeout).await,
            None => match scan(conn, &ctx.prefix, args.limit, timeout).await {
                Ok(keys) => read(conn, &ctx.prefix, &keys, timeout).await,
                Err(e) => Err(e),
            },
        };
        match answer {
            Ok(rows) => answers.push(rows),
            Err(e) => failure = Some(e),
        }
    }
    let majority = conns.len() / 2 + 1;
    if answers.len() < majority {
        let hint = match &failure {
            Some(e) if args.key.is_none() && e.code() == Some("NOPERM") => {
                " (listing locks needs SCAN, which the minimal ACL of docs/SECURITY.md leaves \
                 out: ACL SETUSER <user> +scan)"
            }
            _ => "",
        };
        let e = failure.map(|e| format!("{e}{hint}")).unwrap_or_default();
        let what = match conns.len() {
            1 => e,
            n => format!(
                "no quorum: {} of {n} primaries answered ({e})",
                answers.len()
            ),
        };
        let url = ctx.runtime.redis_url();
        return Err(Failure::new(EXIT_REDIS, format!("Redis at {url}: {what}")));
    }
    if conns.len() == 1 {
        return Ok(answers.pop().unwrap_or_default());
    }
    Ok(agreed(answers, majority, args.limit))
}

/// The locks `majority` of the primaries' answers agree on (the same key with the same
/// token), by key, at most `limit`, each with the shortest time left among them.
fn agreed(answers: Vec<Vec<Row>>, majority: usize, limit: usize) -> Vec<Row> {
    let mut by_lock: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for row in answers.into_iter().flatten() {
        by_lock
            .entry((row.key.clone(), row.token.clone()))
            .or_default()
            .push(row);
    }
    by_lock
        .into_values()
        .filter(|rows| rows.len() >= majority)
        .filter_map(|rows| {
            rows.into_iter()
                .min_by_key(|row| row.ttl_ms.unwrap_or(i64::MAX))
        })
        .take(limit)
        .collect()
}

/// `request` bounded by `timeout`; running past it is an I/O error.
async fn bounded<T>(
    timeout: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or_else(|_| Err((ErrorKind::Io, "no reply within the command timeout").into()))
}

fn header(ctx: &Ctx, args: &StatusArgs, locks: usize) -> String {
    let what = match &args.key {
        Some(key) => format!("{}{key}", ctx.prefix),
        None if ctx.prefix.is_empty() => "every key".to_owned(),
        None => format!("keys under {:?}", ctx.prefix),
    };
    format!(
        "dlock status: {locks} lock(s), {what}, on {} (every {}; Ctrl-C to quit)",
        ctx.runtime.redis_url(),
        humantime::format_duration(args.interval)
    )
}

/// The keys under `prefix` that may be locks (strings, not companion keys), without the
/// prefix, sorted, at most `limit`. On a Redis Cluster every primary is scanned.
async fn scan(
    conn: &mut RedisConnection,
    prefix: &str,
    limit: usize,
    timeout: Duration,
) -> redis::RedisResult<Vec<String>> {
    let pattern = format!("{}*", glob_escape(prefix));
    // A key may be seen twice across a SCAN; the set is bounded (per node) so the scan is too.
    let bound = limit.saturating_mul(10).max(10_000);
    let nodes = match conn {
        RedisConnection::Cluster(cluster) => bounded(timeout, primaries(cluster))
            .await?
            .into_iter()
            .map(Some)
            .collect(),
        _ => vec![None],
    };
    let mut keys = Vec::new();
    for node in nodes {
        let mut cursor = 0u64;
        let mut seen = 0usize;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("string");
            let (next, batch): (u64, Vec<String>) = match (&mut *conn, &node) {
                (RedisConnection::Cluster(cluster), Some((host, port))) => {
                    let at = SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    };
                    let reply = cluster.route_command(cmd, RoutingInfo::SingleNode(at));
                    redis::from_redis_value(bounded(timeout, reply).await?)?
                }
                (conn, _) => bounded(timeout, cmd.query_async(conn)).await?,
            };
            seen += batch.len();
            keys.extend(
                batch
                    .into_iter()
                    .filter(|k| companion_of(k).is_none())
                    .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned)),
            );
            cursor = next;
            if cursor == 0 || seen >= bound {
                break;
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys.truncate(limit);
    Ok(keys)
}

/// The host and port of each primary of the cluster, as the cluster connection knows them.
async fn primaries(cluster: &mut ClusterConnection) -> redis::RedisResult<Vec<(String, u16)>> {
    let every_primary = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let replies = cluster
        .route_command(redis::cmd("PING"), every_primary)
        .await?;
    let redis::Value::Map(replies) = replies else {
        return Err((
            ErrorKind::UnexpectedReturnType,
            "PING to every primary: not a map",
        )
            .into());
    };
    replies
        .into_iter()
        .map(|(address, _)| {
            let address: String = redis::from_redis_value(address)?;
            address
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                .ok_or_else(|| {
                    (
                        ErrorKind::UnexpectedReturnType,
                        "a cluster node's address",
                        address.clone(),
                    )
                        .into()
                })
        })
        .collect()
}

/// `*`, `?`, `[`, `]` and `\` matched literally in a SCAN pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Token, time left and fence of each key (prefix added), all keys' reads sent at once. A key
/// gone in the meantime, or holding another type, is left out.
async fn read(
    conn: &mut RedisConnection,
    prefix: &str,
    keys: &[String],
    timeout: Duration,
) -> redis::RedisResult<Vec<Row>> {
    // One pipeline per key (a key and its fence share a slot; a Cluster refuses a pipeline
    // across slots), all in flight together over the one multiplexed connection.
    let mut reads = JoinSet::new();
    for (at, key) in keys.iter().enumerate() {
        let mut conn = conn.clone();
        let key = key.clone();
        let full = format!("{prefix}{key}");
        reads.spawn(async move {
            let row = bounded(timeout, read_one(&mut conn, key, &full)).await;
            (at, row)
        });
    }
    let mut rows = Vec::with_capacity(keys.len());
    while let Some(done) = reads.join_next().await {
        let (at, row) = done.map_err(|e| (ErrorKind::Client, "a status read", e.to_string()))?;
        if let Some(row) = row? {
            rows.push((at, row));
        }
    }
    rows.sort_by_key(|(at, _)| *at);
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// One key's row, in one round trip; `None` when the key is gone or is not a string.
async fn read_one(
    conn: &mut RedisConnection,
    key: String,
    full: &str,
) -> redis::RedisResult<Option<Row>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("PTTL").arg(full);
    pipe.cmd("GET").arg(full);
    // A key that has no companion keys has no fence.
    if let Ok(fence) = companion_key(full, Companion::Fence) {
        pipe.cmd("GET").arg(fence);
    }
    let replies: Vec<redis::RedisResult<redis::Value>> = pipe.query_async(conn).await?;
    let (Some(Ok(pttl)), Some(Ok(token))) = (replies.first(), replies.get(1)) else {
        return Ok(None);
    };
    let Ok(Some(token)) = redis::from_redis_value::<Option<String>>(token.clone()) else {
        return Ok(None);
    };
    let pttl: i64 = redis::from_redis_value(pttl.clone()).unwrap_or(-2);
    let fence = match replies.get(2) {
        Some(Ok(fence)) => redis::from_redis_value::<Option<String>>(fence.clone())
            .ok()
            .flatten(),
        _ => None,
    };
    Ok(Some(Row {
        key,
        token,
        ttl_ms: (pttl >= 0).then_some(pttl),
        fence: fence.and_then(|f| f.parse().ok()),
    }))
}

/// A token as the table shows it: its first 8 characters.
fn short(token: &str) -> String {
    match token.char_indices().nth(8) {
        Some((at, _)) => format!("{}…", &token[..at]),
        None => token.to_owned(),
    }
}

fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(3);
    let mut out = format!(
        "{:<width$}  {:<9}  {:>10}  {:>6}",
        "KEY", "HOLDER", "TTL", "FENCE"
    );
    for row in rows {
        let ttl = match row.ttl_ms {
            Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
            None => "no expiry".to_owned(),
        };
        let fence = row.fence.map_or("-".to_owned(), |f| f.to_string());
        out.push_str(&format!(
            "\n{:<width$}  {:<9}  {:>10}  {:>6}",
            row.key,
            short(&row.token),
            ttl,
            fence
        ));
    }
    out
}

fn to_json(prefix: &str, now_ms: u64, rows: &[Row]) -> Value {
    let locks: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "key": r.key, "token": r.token, "ttl_ms": r.ttl_ms, "fence": r.fence }))
        .collect();
    json!({ "at_ms": now_ms, "prefix": prefix, "locks": locks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn tokens_are_shortened_to_eight_characters() {
        assert_eq!(short("0f8fad5b-d9cb-469f-a165-70867728950e"), "0f8fad5b…");
        assert_eq!(short("short"), "short");
        assert_eq!(short("ééééééééé"), "éééééééé…");
    }

    #[test]
    fn the_table_shows_key_holder_ttl_and_fence() {
        let rows = [Row {
            key: "jobs:nightly".into(),
            token: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            ttl_ms: Some(12_345),
            fence: Some(7),
        }];
        let text = table(&rows);
        assert!(text.contains("jobs:nightly  0f8fad5b…"), "{text}");
        assert!(text.contains("12.3s") && text.ends_with('7'), "{text}");
    }
}
