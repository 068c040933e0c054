//! The worker protocol: how a test drives a lock client in another process (the `worker`
//! binary, or the Node package's worker) over its stdin and stdout, one JSON object per line.
//!
//! Each [`Request`] gets one [`Reply`]; times are `CLOCK_MONOTONIC` nanoseconds, comparable
//! across processes. A request names its *lane* (default 0): an independent lock client inside
//! the worker, with its own handle and state. Lanes run concurrently, each lane's requests in
//! order, and a reply names the lane it answers. A Rust worker gives each lane a client of its
//! own on one runtime; a Node worker runs every lane on one `DistributedLock` (with
//! `DLOCK_NODE_MAX_INSTANCES` in its environment, fewer instances than lanes), and, as the
//! package has neither, ignores `cancel_after_ms` and answers `keep` and `lost` `fail`
//! (`unsupported`). Requests act on the lane's handle, the one
//! its last `acquire` returned:
//! `acquire {key, ttl_ms, wait_ms?, cancel_after_ms?}` (fenced; with `wait_ms`, waits that
//! long; with `cancel_after_ms`, the call is given up (its future dropped) that long after it
//! started, and the reply is `unknown` with `cancelled`), `extend {ttl_ms}`, `release`;
//! `keep {ttl_ms}` (keeps the lock alive in the background, extending it to `ttl_ms` every
//! third of it, until `release`), `lost` (`ok` once the kept lock is lost, `fail` while it is
//! kept, with the token and the validity the handle counts on now); `fenced_write {resource, element}` (the `examples/fenced-write.lua` verifier with the
//! handle's fence); `guarded_read {set}` and `guarded_write {set, element, fenced?}` (a
//! read-modify-write of a comma-separated set, split in two so that a pause can fall between
//! them; `fenced` refuses the write once a newer fence has written); `close` (Node: closes the
//! lanes' `DistributedLock`, failing its handles, and opens a new one; Rust: nothing); `ping`
//! (answered once the client is connected).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Answered once connected.
    Ping,
    /// Takes the lock (fenced), at once or waiting up to `wait_ms`.
    Acquire {
        /// The lock key.
        key: String,
        /// The lease.
        ttl_ms: u64,
        /// How long to wait for a busy lock (none: retry as the options say).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
        /// Give the call up this long after it started (none: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_after_ms: Option<u64>,
    },
    /// Extends the held lock.
    Extend {
        /// The new lease, from now.
        ttl_ms: u64,
    },
    /// Releases the held lock (stopping its keep-alive first, if any).
    Release,
    /// Keeps the held lock alive in the background, extending it to `ttl_ms`.
    Keep {
        /// The lease each extend sets.
        ttl_ms: u64,
    },
    /// Whether the kept lock is lost: `ok` once it is, `fail` while it is kept.
    Lost,
    /// Node: closes the lanes' lock client (its handles fail from now on) and opens a new one.
    Close,
    /// Writes `element` to the fenced register `resource` with the lock's fence.
    FencedWrite {
        /// The register's key.
        resource: String,
        /// The value.
        element: String,
    },
    /// Reads the guarded set `set` (the first half of a read-modify-write).
    GuardedRead {
        /// The set's key.
        set: String,
    },
    /// Writes back the set read last with `element` added.
    GuardedWrite {
        /// The set's key.
        set: String,
        /// What to add.
        element: String,
        /// Refuse the write once a newer fence has written.
        #[serde(default)]
        fenced: bool,
    },
}

/// What a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It certainly did not happen (busy, not the owner, a stale fence).
    Fail,
    /// It may or may not have happened (a timeout, a lost connection).
    Unknown,
}

/// A request on one of a worker's lanes: what goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The lane it is for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lane: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The lane it answers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lane: u32,
    /// What happened.
    pub outcome: Outcome,
    /// An acquire that failed because the lock was held by someone else (`fail`), as opposed
    /// to one that failed for another reason.
    #[serde(default, skip_serializing_if = "is_false")]
    pub busy: bool,
    /// An acquire given up by `cancel_after_ms` (`unknown`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cancelled: bool,
    /// The lock's token (acquire, extend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The lock's fence (acquire, extend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// When the handle's validity ends, in `CLOCK_MONOTONIC` nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ns: Option<u64>,
    /// The error, when the outcome is not `Ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A reply of `outcome` and nothing else.
    pub fn new(outcome: Outcome) -> Reply {
        Reply {
            lane: 0,
            outcome,
            busy: false,
            cancelled: false,
            token: None,
            fence: None,
            valid_until_ns: None,
            error: None,
        }
    }

    /// `ok`.
    pub fn ok() -> Reply {
        Reply::new(Outcome::Ok)
    }

    /// `fail`, with the reason.
    pub fn fail(error: impl ToString) -> Reply {
        Reply {
            error: Some(error.to_string()),
            ..Reply::new(Outcome::Fail)
        }
    }

    /// `unknown`, with the reason.
    pub fn unknown(error: impl ToString) -> Reply {
        Reply {
            error: Some(error.to_string()),
            ..Reply::new(Outcome::Unknown)
        }
    }

    /// `fail` because the lock was held by someone else.
    pub fn busy(error: impl ToString) -> Reply {
        Reply {
            busy: true,
            ..Reply::fail(error)
        }
    }

    /// `unknown` because the call was given up.
    pub fn cancelled() -> Reply {
        Reply {
            cancelled: true,
            ..Reply::unknown("cancelled")
        }
    }
}

impl Reply {
    /// `valid_until_ns` as an `Instant` of this process.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until_ns.map(instant_at)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the one clock all processes on the machine share.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The `Instant` of a `CLOCK_MONOTONIC` reading from any process on this machine.
pub fn instant_at(monotonic: u64) -> Instant {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    let (base, base_ns) = *BASE.get_or_init(|| (Instant::now(), monotonic_ns()));
    if monotonic >= base_ns {
        base + Duration::from_nanos(monotonic - base_ns)
    } else {
        base.checked_sub(Duration::from_nanos(base_ns - monotonic))
            .unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_keep_their_wire_form() {
        let acquire = Request::Acquire {
            key: "k".into(),
            ttl_ms: 5,
            wait_ms: None,
            cancel_after_ms: None,
        };
        let line = serde_json::to_string(&acquire).unwrap();
        assert_eq!(line, r#"{"cmd":"acquire","key":"k","ttl_ms":5}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), acquire);
        let reply: Reply = serde_json::from_str(r#"{"outcome":"unknown","error":"e"}"#).unwrap();
        assert_eq!(reply, Reply::unknown("e"));
        assert_eq!(
            serde_json::to_string(&Reply::ok()).unwrap(),
            r#"{"outcome":"ok"}"#
        );
        let on_lane = Envelope {
            lane: 2,
            request: Request::Release,
        };
        let line = serde_json::to_string(&on_lane).unwrap();
        assert_eq!(line, r#"{"lane":2,"cmd":"release"}"#);
        assert_eq!(serde_json::from_str::<Envelope>(&line).unwrap(), on_lane);
        let plain: Envelope = serde_json::from_str(r#"{"cmd":"ping"}"#).unwrap();
        assert_eq!(plain.lane, 0);
        assert_eq!(
            serde_json::to_string(&Reply::busy("held")).unwrap(),
            r#"{"outcome":"fail","busy":true,"error":"held"}"#
        );
    }
}
