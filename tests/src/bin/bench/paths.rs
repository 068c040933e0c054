//! The lock clients the throughput bench compares, behind one small interface.

use std::time::Duration;

use dlock_host::RedisConnection;
use dlock_host::bundled::BundledScript;
use dlock_host::{Allocation, Client, LockComponent, LockHandle, LockOptions, Policy, Runtime};
use dlock_plugin_host::{JOB_PLUGIN, Path as PluginPath, Plugin, PluginHost, PluginInstance};
use dlock_tests::components::FLOOR;

use super::throughput::Workload;

/// A lock implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    /// The product: the guest component through the host API.
    Component,
    /// The floor of any component-hosted lock: a minimal component of the same world
    /// (`tests/floor/`: one `redis-eval` per acquire and per release, no lock logic), linked
    /// and driven as the guest is, on a connection of its own to the same Redis.
    Floor,
    /// Plain Rust: the same Lua scripts by EVALSHA through the same connection manager.
    Native,
    /// The `rslock` crate (Redlock, single node), on its own connection.
    Rslock,
    /// From inside a plugin (the example job plugin's `lock-pair`), the lock API provided by
    /// the host (the reference plugin host, `plugin-host`).
    PluginHost,
    /// From inside the same plugin composed with the dlock component.
    PluginComposed,
}

/// The lock key of the hot-key workload and the TTL every bench lock gets.
pub const TTL: Duration = Duration::from_secs(10);
/// The semaphore workload's limit: more than any concurrency, so every attempt gets a permit.
pub const SEM_LIMIT: u32 = 1000;

/// One worker's client for a path.
pub enum Worker {
    Component(Client),
    Native(Native),
    Rslock(rslock::LockManager),
    Plugin(PluginInstance),
}

/// A held lock, to release.
pub enum Held {
    Component(LockHandle),
    Native {
        key: String,
        token: String,
    },
    /// A native permit of a semaphore.
    NativePermit {
        key: String,
        token: String,
    },
    Rslock(rslock::Lock),
    /// Taken and already released inside the plugin: one call is the whole pair.
    Plugin,
}

/// What the paths beside the target's component path need, made once per bench run: the
/// floor component's runtime, and the plugin paths' host with the job plugin loaded both ways.
pub struct Fixtures {
    floor: Runtime,
    host: PluginHost,
    host_provided: Plugin,
    composed: Plugin,
}

impl Fixtures {
    /// The fixtures on the single Redis at `url`, the floor's clients allocated as the
    /// component's are.
    pub async fn new(url: &str, allocation: Allocation) -> Result<Fixtures, String> {
        let floor = LockComponent::from_file(FLOOR, allocation).map_err(|e| e.to_string())?;
        let floor = Runtime::builder(url)
            .with_component(floor)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let fail = |e: anyhow::Error| format!("{e:#}");
        // The bench measures throughput: no rate limit of the host's own in the way.
        let host = PluginHost::connect(url)
            .await
            .map_err(fail)?
            .with_lock_calls_per_second(u32::MAX);
        let unlimited = |policy: Policy| policy.with_max_evals_per_second(u32::MAX);
        let host_provided = host
            .load(JOB_PLUGIN, PluginPath::HostProvided, "bench:")
            .map_err(fail)?
            .with_policy(unlimited);
        let composed = host
            .load(JOB_PLUGIN, PluginPath::Composed, "bench:")
            .map_err(fail)?
            .with_policy(unlimited);
        Ok(Fixtures {
            floor,
            host,
            host_provided,
            composed,
        })
    }

    async fn instance(&self, plugin: &Plugin) -> Result<Worker, String> {
        let instance = self.host.instantiate(plugin).await;
        instance.map(Worker::Plugin).map_err(|e| format!("{e:#}"))
    }
}

impl Worker {
    pub async fn new(
        path: Path,
        runtime: &Runtime,
        url: &str,
        fixtures: &Fixtures,
    ) -> Result<Worker, String> {
        let client = async |runtime: &Runtime| {
            let client = runtime.client(LockOptions::default()).await;
            client.map(Worker::Component).map_err(|e| e.to_string())
        };
        Ok(match path {
            Path::PluginHost => fixtures.instance(&fixtures.host_provided).await?,
            Path::PluginComposed => fixtures.instance(&fixtures.composed).await?,
            Path::Component => client(runtime).await?,
            Path::Floor => client(&fixtures.floor).await?,
            Path::Native => Worker::Native(Native::new(runtime.connection())),
            Path::Rslock => {
                let mut manager = rslock::LockManager::new(vec![url.to_owned()]);
                // One attempt per lock call, as the other paths make.
                manager.set_retry(1, Duration::from_millis(1));
                Worker::Rslock(manager)
            }
        })
    }

    /// One attempt to take `key` (one permit of it for the semaphore workload): `Some` when
    /// acquired, `None` when busy.
    pub async fn try_acquire(
        &mut self,
        key: &str,
        workload: Workload,
    ) -> Result<Option<Held>, String> {
        if workload == Workload::Semaphore {
            return match self {
                Worker::Component(client) => Ok(client
                    .semaphore(key, SEM_LIMIT)
                    .try_acquire(1, TTL)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Held::Component)),
                Worker::Native(native) => native.try_acquire_permit(key).await,
                _ => {
                    Err("the semaphore workload runs on the component and native paths only".into())
                }
            };
        }
        match self {
            Worker::Component(client) => Ok(client
                .try_acquire(key, TTL)
                .await
                .map_err(|e| e.to_string())?
                .map(Held::Component)),
            Worker::Native(native) => native.try_acquire(key).await,
            Worker::Rslock(manager) => match manager.lock(key.as_bytes(), TTL).await {
                Ok(lock) => Ok(Some(Held::Rslock(lock))),
                Err(rslock::LockError::Unavailable) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Worker::Plugin(instance) => {
                let ttl_ms = TTL.as_millis() as u64;
                let (taken,): (Result<bool, String>,) = instance
                    .call("lock-pair", (key.to_owned(), ttl_ms))
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                Ok(taken?.then_some(Held::Plugin))
            }
        }
    }

    /// Releases a lock this worker took.
    pub async fn release(&mut self, held: Held) -> Result<(), String> {
        match (self, held) {
            (Worker::Component(_), Held::Component(lock)) => match lock.release().await {
                Ok(dlock_host::ReleaseOutcome::Released) => Ok(()),
                Ok(other) => Err(format!("released a lock found {other:?}")),
                Err(e) => Err(e.to_string()),
            },
            (Worker::Native(native), Held::Native { key, token }) => {
                native.release(&key, &token).await
            }
            (Worker::Native(native), Held::NativePermit { key, token }) => {
                native.release_permit(&key, &token).await
            }
            (Worker::Rslock(manager), Held::Rslock(lock)) => {
                manager.unlock(&lock).await;
                Ok(())
            }
            (Worker::Plugin(_), Held::Plugin) => Ok(()),
            _ => Err("a lock released by another path".into()),
        }
    }
}

/// The native baseline: what a plain Rust client of the same scripts does per lock (a UUID v4
/// token, EVALSHA of the acquire script, EVALSHA of the release script), with the script
/// hashes computed once.
pub struct Native {
    conn: RedisConnection,
    acquire_sha: &'static str,
    release_sha: &'static str,
}

impl Native {
    fn new(conn: RedisConnection) -> Native {
        Native {
            conn,
            acquire_sha: BundledScript::Acquire.sha1(),
            release_sha: BundledScript::Release.sha1(),
        }
    }

    async fn eval(
        &mut self,
        script: BundledScript,
        sha: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<i64, String> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
        match cmd.query_async(&mut self.conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script.source())
                    .query_async(&mut self.conn)
                    .await
                    .map_err(|e| e.to_string())?;
                cmd.query_async(&mut self.conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    async fn try_acquire(&mut self, key: &str) -> Result<Option<Held>, String> {
        let token = uuid::Uuid::new_v4().hyphenated().to_string();
        let ttl = TTL.as_millis().to_string();
        let sha = self.acquire_sha;
        let reply = self
            .eval(BundledScript::Acquire, sha, &[key], &[&token, &ttl])
            .await?;
        Ok((reply > 0).then(|| Held::Native {
            key: key.to_owned(),
            token,
        }))
    }

    async fn try_acquire_permit(&mut self, key: &str) -> Result<Option<Held>, String> {
        let token = uuid::Uuid::new_v4().hyphenated().to_string();
        let (ttl, limit) = (TTL.as_millis().to_string(), SEM_LIMIT.to_string());
        let script = BundledScript::SemaphoreAcquire;
        let reply = self
            .eval(script, script.sha1(), &[key], &[&token, &ttl, &limit, "1"])
            .await?;
        Ok((reply > 0).then(|| Held::NativePermit {
            key: key.to_owned(),
            token,
        }))
    }

    async fn release_permit(&mut self, key: &str, token: &str) -> Result<(), String> {
        let script = BundledScript::SemaphoreRelease;
        match self
            .eval(script, script.sha1(), &[key], &[token, "1"])
            .await?
        {
            1 => Ok(()),
            _ => Err(format!("{key}: a permit gone before its release")),
        }
    }

    async fn release(&mut self, key: &str, token: &str) -> Result<(), String> {
        let sha = self.release_sha;
        match self
            .eval(BundledScript::Release, sha, &[key], &[token])
            .await?
        {
            1 => Ok(()),
            _ => Err(format!("{key}: released by someone else")),
        }
    }
}
