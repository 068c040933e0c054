//! The spans and instruments dlock reports (listed in the crate's documentation, section
//! "Observability"), recorded through the `tracing` and `metrics` facades.

use std::time::Duration;

use crate::bundled::BundledScript;
use crate::error::Error;

/// The `outcome` label of a failed call.
pub(crate) fn error_outcome(e: &Error) -> &'static str {
    match e {
        Error::NotAcquired => "not_acquired",
        Error::Cancelled => "cancelled",
        Error::Expired => "expired",
        Error::TakenOver => "taken_over",
        Error::NotHeld => "not_held",
        Error::ReleaseIncomplete(_) => "incomplete",
        _ => "failed",
    }
}

/// Records a finished `acquire` (`wait`: `wait_for_lock`; `once`: `try_acquire`).
pub(crate) fn acquired(
    operation: &'static str,
    outcome: &'static str,
    took: Duration,
    attempts: u64,
) {
    let secs = took.as_secs_f64();
    macro_rules! record {
        ($op:literal) => {{
            match outcome {
                "acquired" => metrics::histogram!("dlock.acquire.duration", "operation" => $op, "outcome" => "acquired").record(secs),
                "busy" => metrics::histogram!("dlock.acquire.duration", "operation" => $op, "outcome" => "busy").record(secs),
                "not_acquired" => metrics::histogram!("dlock.acquire.duration", "operation" => $op, "outcome" => "not_acquired").record(secs),
                "cancelled" => metrics::histogram!("dlock.acquire.duration", "operation" => $op, "outcome" => "cancelled").record(secs),
                _ => metrics::histogram!("dlock.acquire.duration", "operation" => $op, "outcome" => "failed").record(secs),
            }
            metrics::histogram!("dlock.acquire.attempts", "operation" => $op).record(attempts as f64);
        }};
    }
    match operation {
        "acquire" => record!("acquire"),
        "try_acquire" => record!("try_acquire"),
        _ => record!("wait_for_lock"),
    }
}

/// Records a release's outcome (`released`, `expired`, `taken_over`, or a failure), and how
/// long the lock was held when this release freed it.
pub(crate) fn released(outcome: &'static str, held: Option<Duration>) {
    match outcome {
        "released" => metrics::counter!("dlock.release", "outcome" => "released").increment(1),
        "expired" => {
            metrics::counter!("dlock.release", "outcome" => "expired").increment(1);
            lost("expired");
        }
        "taken_over" => {
            metrics::counter!("dlock.release", "outcome" => "taken_over").increment(1);
            lost("taken_over");
        }
        "incomplete" => metrics::counter!("dlock.release", "outcome" => "incomplete").increment(1),
        _ => metrics::counter!("dlock.release", "outcome" => "failed").increment(1),
    }
    if let Some(held) = held {
        metrics::histogram!("dlock.lock.held").record(held.as_secs_f64());
    }
}

/// Records an extend's outcome (`extended`, `expired`, `taken_over`, or a failure).
pub(crate) fn extended(outcome: &'static str) {
    match outcome {
        "extended" => metrics::counter!("dlock.extend", "outcome" => "extended").increment(1),
        "expired" => {
            metrics::counter!("dlock.extend", "outcome" => "expired").increment(1);
            lost("expired");
        }
        "taken_over" => {
            metrics::counter!("dlock.extend", "outcome" => "taken_over").increment(1);
            lost("taken_over");
        }
        _ => metrics::counter!("dlock.extend", "outcome" => "failed").increment(1),
    }
}

/// Records a lease found lost, or given up (`not_kept`, `max_hold`).
pub(crate) fn lost(reason: &'static str) {
    match reason {
        "expired" => metrics::counter!("dlock.lock.lost", "reason" => "expired").increment(1),
        "taken_over" => metrics::counter!("dlock.lock.lost", "reason" => "taken_over").increment(1),
        "max_hold" => metrics::counter!("dlock.lock.lost", "reason" => "max_hold").increment(1),
        _ => metrics::counter!("dlock.lock.lost", "reason" => "not_kept").increment(1),
    }
}

/// Records an acquire attempt that found the lock held.
pub(crate) fn busy() {
    metrics::counter!("dlock.acquire.busy").increment(1);
}

/// Why a wait between attempts ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WokenBy {
    Signal,
    Timeout,
    Cancel,
}

/// Records the end of a wait between attempts.
pub(crate) fn woken(by: WokenBy) {
    match by {
        WokenBy::Signal => metrics::counter!("dlock.wait.wakeups", "by" => "signal").increment(1),
        WokenBy::Timeout => metrics::counter!("dlock.wait.wakeups", "by" => "timeout").increment(1),
        WokenBy::Cancel => metrics::counter!("dlock.wait.wakeups", "by" => "cancel").increment(1),
    }
}

/// Records a wait that wanted a release signal but polled.
pub(crate) fn fallback() {
    metrics::counter!("dlock.wait.fallbacks").increment(1);
}

/// Records a signal passed on by a waiter that had given up.
pub(crate) fn passed_on() {
    metrics::counter!("dlock.wait.passed_on").increment(1);
}

/// Why the policy refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    Rate,
    Policy,
    Script,
}

/// Records a refusal by the host's policy.
pub(crate) fn denied(why: Denial) {
    match why {
        Denial::Rate => metrics::counter!("dlock.redis.denied", "reason" => "rate").increment(1),
        Denial::Policy => {
            metrics::counter!("dlock.redis.denied", "reason" => "policy").increment(1)
        }
        Denial::Script => {
            metrics::counter!("dlock.redis.denied", "reason" => "script").increment(1)
        }
    }
}

/// The `db.stored_procedure.name` of a script: the bundled script's name, else `other`.
pub(crate) fn script_name(role: Option<BundledScript>) -> &'static str {
    role.map_or("other", BundledScript::name)
}

/// Records one Redis call's duration (OpenTelemetry's `db.client.operation.duration`).
pub(crate) fn redis_call(operation: &'static str, script: Option<BundledScript>, took: Duration) {
    let secs = took.as_secs_f64();
    macro_rules! record {
        ($op:literal, $script:literal) => {
            metrics::histogram!(
                "db.client.operation.duration",
                "db.system.name" => "redis",
                "db.operation.name" => $op,
                "db.stored_procedure.name" => $script
            )
            .record(secs)
        };
    }
    match (operation, script.map(BundledScript::name)) {
        ("BLPOP", _) => metrics::histogram!(
            "db.client.operation.duration",
            "db.system.name" => "redis",
            "db.operation.name" => "BLPOP"
        )
        .record(secs),
        (_, Some("acquire")) => record!("EVALSHA", "acquire"),
        (_, Some("release")) => record!("EVALSHA", "release"),
        (_, Some("extend")) => record!("EVALSHA", "extend"),
        (_, Some("check")) => record!("EVALSHA", "check"),
        _ => record!("EVALSHA", "other"),
    }
}

/// The span of one Redis call.
pub(crate) fn redis_span(
    operation: &'static str,
    procedure: &str,
    server: &(String, Option<u16>, i64),
) -> tracing::Span {
    tracing::debug_span!(
        "redis",
        otel.name = format_args!("{operation} {procedure}"),
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = operation,
        db.stored_procedure.name = procedure,
        db.namespace = server.2,
        server.address = server.0.as_str(),
        server.port = server.1,
        error.type = tracing::field::Empty,
    )
}
