//! The conformance cases of `tests/conformance/*.json`, run through `dlock_host`'s public API.
//!
//! The same files are run by the Node package's runner (`node/test/conformance.test.mjs`) with
//! the same expected results: one behaviour, two runtimes. The format is described in
//! `tests/conformance/README.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dlock_host::{
    Client, Deadline, Error, HandleStatus, KeyState, LockHandle, LockInfo, LockOptions, Policy,
    ReleaseOutcome, Runtime,
};
use dlock_tests::redis;
use serde_json::{Map, Value, json};

/// How long an `until` step polls before the case fails (a hang guard, not a timing check).
const UNTIL_LIMIT: Duration = Duration::from_secs(10);

/// What a step came to: a JSON value, or an error kind with its message.
type Outcome = Result<Value, (String, String)>;

/// The directory of the case files.
fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// The case files, in name order.
fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/conformance exists")
        .map(|entry| entry.expect("a readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// The error kind of the conformance format for a host error.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotAcquired => "not-acquired",
        Error::NotHeld => "not-held",
        Error::Expired => "expired",
        Error::TakenOver => "taken-over",
        Error::Cancelled => "cancelled",
        Error::GrantedTooLate => "granted-too-late",
        Error::NotALock => "not-a-lock",
        Error::InvalidArgument(_) => "invalid-argument",
        Error::RedisUnavailable(_) => "unavailable",
        Error::RedisTimeout => "timeout",
        Error::RedisRejected(_) => "rejected",
        Error::Denied(_) => "denied",
        _ => "other",
    }
}

/// A host error as the step's outcome: its kind and message.
fn failed(e: Error) -> (String, String) {
    (kind(&e).to_owned(), e.to_string())
}

/// A handle status in the format's terms.
fn status_name(status: HandleStatus) -> &'static str {
    match status {
        HandleStatus::Held => "held",
        HandleStatus::Expired => "expired",
        HandleStatus::Released => "released",
        HandleStatus::Releasing => "releasing",
        HandleStatus::Lost => "lost",
        HandleStatus::Attached => "attached",
        _ => "unknown",
    }
}

/// A handle's info in the format's terms; `is_held` as the handle answers it
/// (`LockHandle::is_held`), not derived from the status here.
fn info_json(info: &LockInfo, is_held: bool) -> Value {
    let lease = info
        .expires_at
        .duration_since(info.acquired_at)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "key": info.key,
        "token": info.token,
        "fence": info.fence,
        "status": status_name(info.status),
        "isHeld": is_held,
        "leaseMs": lease,
    })
}

/// A key state in the format's terms.
fn key_state_json(state: KeyState) -> Value {
    match state {
        KeyState::Unlocked => json!({ "state": "unlocked" }),
        KeyState::Expiring(left) => {
            json!({ "state": "expiring", "ttlMs": left.as_millis() as u64 })
        }
        KeyState::Persistent => json!({ "state": "persistent" }),
        _ => json!({ "state": "unknown" }),
    }
}

/// A raw Redis reply in the format's terms.
fn redis_json(value: redis::Value) -> Value {
    match value {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(n) => json!(n),
        redis::Value::BulkString(bytes) => json!(String::from_utf8_lossy(&bytes)),
        redis::Value::SimpleString(s) => json!(s),
        redis::Value::Okay => json!("OK"),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(redis_json).collect()),
        other => json!(format!("{other:?}")),
    }
}

/// Whether `actual` matches `expected` as the format says: equal JSON, `{"range": [lo, hi]}`
/// for a number in range, and objects matching on the fields `expected` names.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), _) if e.len() == 1 && e.contains_key("range") => {
            let bounds = e["range"].as_array().expect("range is [lo, hi]");
            match actual.as_f64() {
                Some(n) => bounds[0].as_f64().unwrap() <= n && n <= bounds[1].as_f64().unwrap(),
                None => false,
            }
        }
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|got| matches(v, got))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        _ => expected == actual,
    }
}

/// Runs a raw Redis command (`[name, args...]`) on a plain connection of the case.
async fn raw_command(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &Value,
) -> Result<Value, String> {
    let parts = cmd.as_array().expect("cmd is a list");
    let mut command = redis::cmd(parts[0].as_str().expect("a command name"));
    for arg in &parts[1..] {
        match arg {
            Value::String(s) => command.arg(s),
            other => command.arg(other.to_string()),
        };
    }
    command
        .query_async::<redis::Value>(conn)
        .await
        .map(redis_json)
        .map_err(|e| e.to_string())
}

/// Whether an `until` step's reply is there: it matches `equals`, or (a string) it contains
/// `contains`.
fn until_reached(step: &Value, got: &Value) -> bool {
    match step["contains"].as_str() {
        Some(text) => got.as_str().is_some_and(|s| s.contains(text)),
        None => matches(&step["equals"], got),
    }
}

/// A step on the case's plain connection: `redis`, `until` or `elapse`. `None` for other ops.
async fn raw_step(conn: &mut redis::aio::MultiplexedConnection, step: &Value) -> Option<Outcome> {
    Some(match step["op"].as_str().expect("op") {
        "redis" => raw_command(conn, &step["cmd"])
            .await
            .map_err(|e| ("redis".to_owned(), e)),
        "until" => {
            let started = Instant::now();
            loop {
                // A failing command fails the step at once (as in the Node runner): a wrong
                // command does not get right by polling.
                let got = match raw_command(conn, &step["cmd"]).await {
                    Ok(got) => got,
                    Err(e) => return Some(Err(("redis".to_owned(), e))),
                };
                if until_reached(step, &got) {
                    break Ok(Value::Null);
                }
                if started.elapsed() > UNTIL_LIMIT {
                    break Err((
                        "until".to_owned(),
                        format!("still {got} after {UNTIL_LIMIT:?}"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        "elapse" => {
            // The event is the clock itself (a lease running out): never earlier than `ms`.
            let ms = step["ms"].as_u64().expect("ms");
            tokio::time::sleep_until((Instant::now() + Duration::from_millis(ms)).into()).await;
            Ok(Value::Null)
        }
        _ => return None,
    })
}

/// One case being run: its runtime, clients and named handles.
struct Run {
    runtime: Runtime,
    clients: HashMap<String, Client>,
    handles: HashMap<String, LockHandle>,
    raw: redis::aio::MultiplexedConnection,
}

impl Run {
    /// `value` with `$h.token` / `$h.fence` replaced and `{"repeat", "times"}` expanded.
    fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => match s.strip_prefix('$').and_then(|r| r.split_once('.')) {
                Some((name, field)) => {
                    let info = self
                        .handles
                        .get(name)
                        .unwrap_or_else(|| panic!("no handle {name}"))
                        .info();
                    match field {
                        "token" => json!(info.token),
                        "fence" => json!(info.fence),
                        other => panic!("unknown handle field {other}"),
                    }
                }
                None => value.clone(),
            },
            Value::Object(o) if o.contains_key("repeat") => {
                let times = o["times"].as_u64().expect("times") as usize;
                json!(o["repeat"].as_str().expect("repeat").repeat(times))
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect::<Map<_, _>>(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    /// The client the step names (`default` when it names none).
    fn client(&self, step: &Value) -> &Client {
        let name = step["client"].as_str().unwrap_or("default");
        self.clients
            .get(name)
            .unwrap_or_else(|| panic!("no client {name}"))
    }

    /// The handle the step names.
    fn handle(&self, step: &Value) -> &LockHandle {
        let name = step["handle"].as_str().expect("handle");
        self.handles
            .get(name)
            .unwrap_or_else(|| panic!("no handle {name}"))
    }

    /// Keeps a new handle under the step's `as` name; the step's value is `"handle"`.
    fn keep(&mut self, step: &Value, handle: LockHandle) -> Value {
        if let Some(name) = step["as"].as_str() {
            self.handles.insert(name.to_owned(), handle);
        }
        json!("handle")
    }

    /// Runs one step; its value or its error.
    async fn step(&mut self, step: &Value) -> Outcome {
        let ms = |field: &str| Duration::from_millis(step[field].as_u64().expect(field));
        let key = step.get("key").map(|k| k.as_str().expect("key").to_owned());
        let key = key.as_deref().unwrap_or("");
        match step["op"].as_str().expect("op") {
            "acquire" => {
                let handle = self.client(step).acquire(key, ms("ttlMs")).await;
                Ok(self.keep(step, handle.map_err(failed)?))
            }
            "tryAcquire" => match self.client(step).try_acquire(key, ms("ttlMs")).await {
                Ok(Some(handle)) => Ok(self.keep(step, handle)),
                Ok(None) => Ok(Value::Null),
                Err(e) => Err(failed(e)),
            },
            "waitForLock" => {
                let deadline = Deadline::after(ms("timeoutMs"));
                let handle = self
                    .client(step)
                    .wait_for_lock(key, ms("ttlMs"), deadline)
                    .await;
                Ok(self.keep(step, handle.map_err(failed)?))
            }
            "isLocked" => Ok(json!(
                self.client(step).is_locked(key).await.map_err(failed)?
            )),
            "keyState" => Ok(key_state_json(
                self.client(step).key_state(key).await.map_err(failed)?,
            )),
            "attach" => {
                let token = step["token"].as_str().expect("token").to_owned();
                let handle = self.client(step).attach(key, &token).await;
                Ok(self.keep(step, handle.map_err(failed)?))
            }
            "release" => {
                let outcome = self.handle(step).release().await.map_err(failed)?;
                Ok(json!(match outcome {
                    ReleaseOutcome::Released => "released",
                    ReleaseOutcome::Expired => "expired",
                    ReleaseOutcome::TakenOver => "taken-over",
                    _ => "other",
                }))
            }
            "extend" => {
                self.handle(step)
                    .extend(ms("ttlMs"))
                    .await
                    .map_err(failed)?;
                Ok(Value::Null)
            }
            "info" => {
                let handle = self.handle(step);
                Ok(info_json(&handle.info(), handle.is_held()))
            }
            "client" => {
                let options = lock_options(&step["options"]);
                let client = self.runtime.client(options).await.map_err(failed)?;
                let name = step["name"].as_str().expect("name").to_owned();
                self.clients.insert(name, client);
                Ok(Value::Null)
            }
            "during" => {
                // The inner step, and meanwhile the side steps on a plain connection of their
                // own; the inner step's outcome is the step's.
                let mut side_conn = self.raw.clone();
                let side = async {
                    for side_step in step["side"].as_array().expect("side is a list") {
                        let outcome = raw_step(&mut side_conn, side_step)
                            .await
                            .unwrap_or_else(|| panic!("side steps are redis, until, elapse"));
                        if let Err((kind, message)) = outcome {
                            return Err(format!("side step {side_step}: {kind}: {message}"));
                        }
                    }
                    Ok(())
                };
                let (outcome, side) = tokio::join!(Box::pin(self.step(&step["step"])), side);
                if let Err(e) = side {
                    return Err(("side".to_owned(), e));
                }
                outcome
            }
            "redis" | "until" | "elapse" => {
                raw_step(&mut self.raw, step).await.expect("a raw step")
            }
            other => panic!("unknown op {other}"),
        }
    }
}

/// Lock options from the format's (the Node package's) option names.
fn lock_options(spec: &Value) -> LockOptions {
    let mut options = LockOptions::default();
    let Some(fields) = spec.as_object() else {
        return options;
    };
    for (name, value) in fields {
        let ms = || Duration::from_millis(value.as_u64().expect("milliseconds"));
        options = match name.as_str() {
            "retryCount" => options.with_retry_count(value.as_u64().expect("count") as u32),
            "retryDelayMs" => options.with_retry_delay(ms()),
            "maxRetryDelayMs" => options.with_max_retry_delay(ms()),
            "jitter" => options.with_jitter(value.as_bool().expect("bool")),
            "keyPrefix" => options.with_key_prefix(value.as_str().expect("string")),
            "fencing" => options.with_fencing(value.as_bool().expect("bool")),
            "safetyMarginMs" => options.with_safety_margin(ms()),
            other => panic!("unknown option {other}"),
        };
    }
    options
}

/// The host policy from the format's policy fields.
fn policy(spec: &Value) -> Policy {
    let mut policy = Policy::default();
    let Some(fields) = spec.as_object() else {
        return policy;
    };
    for (name, value) in fields {
        let n = || value.as_u64().expect("a number");
        policy = match name.as_str() {
            "allowForeignTokens" => match value.as_bool().expect("a boolean") {
                true => policy.with_foreign_tokens(true),
                false => policy, // the default
            },
            "keyNamespace" => policy.with_key_namespace(value.as_str().expect("string")),
            "commandTimeoutMs" => policy.with_command_timeout(Duration::from_millis(n())),
            "maxKeyBytes" => policy.with_max_key_bytes(n() as usize),
            "maxRequestBytes" => policy.with_max_request_bytes(n() as usize),
            "maxEvalsPerSecond" => policy.with_max_evals_per_second(n() as u32),
            other => panic!("unknown policy field {other}"),
        };
    }
    policy
}

/// Runs one case on a flushed server; the first step that does not come out as expected.
async fn run_case(url: &str, case: &Value) -> Result<(), String> {
    let runtime = Runtime::builder(url)
        .with_policy(policy(&case["policy"]))
        .build()
        .await
        .map_err(|e| format!("runtime: {e}"))?;
    let raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut run = Run {
        runtime,
        clients: HashMap::new(),
        handles: HashMap::new(),
        raw,
    };
    let specs = match case.get("clients") {
        Some(Value::Object(specs)) => specs.clone(),
        _ => Map::from_iter([("default".to_owned(), json!({}))]),
    };
    for (name, spec) in specs {
        let spec = run.resolve(&spec);
        let client = run
            .runtime
            .client(lock_options(&spec))
            .await
            .map_err(|e| format!("client {name}: {e}"))?;
        run.clients.insert(name, client);
    }
    for (i, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
        let step = run.resolve(step);
        let outcome = run.step(&step).await;
        let expected = &step["expect"];
        let ok = match (expected.get("ok"), expected.get("error"), &outcome) {
            (None, None, Ok(_)) => true,
            (Some(want), None, Ok(got)) => matches(want, got),
            (None, Some(want), Err((kind, message))) => {
                want.as_str() == Some(kind.as_str())
                    && expected["contains"]
                        .as_str()
                        .is_none_or(|text| message.contains(text))
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "step {i} {}: expected {expected}, got {outcome:?}",
                step["op"]
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_conformance_case_behaves_as_written() {
    let server = redis();
    let url = server.url();
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for file in case_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for case in doc["cases"].as_array().expect("cases") {
            count += 1;
            // A case that failed half-way may have left its clients paused.
            redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async::<()>(&mut admin)
                .await
                .unwrap();
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut admin)
                .await
                .unwrap();
            if let Err(e) = run_case(&url, case).await {
                failures.push(format!("{name}: {}: {e}", case["name"]));
            }
        }
    }
    assert!(count >= 40, "only {count} conformance cases found");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
