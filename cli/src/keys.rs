//! `acquire`, `release` and `extend`: one lock operation each.

use std::time::Duration;

use dlock_host::{Deadline, Error, ReleaseOutcome};
use serde_json::json;

use super::output::outln;
use super::{CliResult, Ctx, EXIT_BUSY, EXIT_EXPIRED, EXIT_OK, Failure, epoch_ms};

pub(super) async fn acquire(
    ctx: &Ctx,
    key: &str,
    ttl: Duration,
    wait: Option<Duration>,
    fence: bool,
) -> CliResult<u8> {
    let client = ctx.client(fence).await?;
    let acquired = match wait {
        None => client.try_acquire(key, ttl).await,
        Some(wait) => client
            .wait_for_lock(key, ttl, Deadline::after(wait))
            .await
            .map(Some),
    };
    let lock = match acquired {
        Ok(Some(lock)) => lock,
        Ok(None) | Err(dlock_host::Error::NotAcquired) => {
            return Err(Failure::new(
                EXIT_BUSY,
                format!("{key}: held by someone else"),
            ));
        }
        Err(e) => return Err(ctx.fail_to_acquire(key, e)),
    };
    let info = lock.info();
    let printed = if ctx.json {
        let out = json!({
            "key": info.key,
            "token": info.token,
            "fence": info.fence,
            "expires_at_ms": epoch_ms(info.expires_at),
        });
        outln!("{out}")
    } else {
        match info.fence {
            Some(fence) => outln!("{} {fence}", info.token),
            None => outln!("{}", info.token),
        }
    };
    if let Err(unprinted) = printed {
        // Nobody can learn the token: a lock kept now could only expire.
        let message = match lock.release().await {
            Ok(_) => format!("{}; the lock was released", unprinted.message),
            Err(e) => format!(
                "{}, and the lock could not be released (it expires with its TTL): {}",
                unprinted.message,
                ctx.fail(e).message
            ),
        };
        return Err(Failure::new(unprinted.code, message));
    }
    Ok(EXIT_OK)
}

pub(super) async fn release(ctx: &Ctx, key: &str, token: &str) -> CliResult<u8> {
    let client = ctx.client(false).await?;
    let handle = client.attach(key, token).await.map_err(|e| ctx.fail(e))?;
    let outcome = handle.release().await.map_err(|e| ctx.fail(e))?;
    if ctx.json {
        let name = match outcome {
            ReleaseOutcome::Released => "released",
            ReleaseOutcome::Expired => "expired",
            _ => "taken-over",
        };
        outln!("{}", json!({ "key": key, "outcome": name }))?;
    }
    match outcome {
        ReleaseOutcome::Released => Ok(EXIT_OK),
        ReleaseOutcome::Expired => Err(expired(key)),
        _ => Err(taken_over(key)),
    }
}

pub(super) async fn extend(ctx: &Ctx, key: &str, token: &str, ttl: Duration) -> CliResult<u8> {
    let client = ctx.client(false).await?;
    let handle = client.attach(key, token).await.map_err(|e| ctx.fail(e))?;
    let outcome = match handle.extend(ttl).await {
        Ok(()) => "extended",
        Err(Error::Expired) => "expired",
        Err(Error::TakenOver) => "taken-over",
        Err(e) => return Err(ctx.fail(e)),
    };
    if ctx.json {
        let info = handle.info();
        let out = match outcome {
            "extended" => {
                json!({ "key": key, "outcome": outcome, "expires_at_ms": epoch_ms(info.expires_at) })
            }
            _ => json!({ "key": key, "outcome": outcome }),
        };
        outln!("{out}")?;
    }
    match outcome {
        "extended" => Ok(EXIT_OK),
        "expired" => Err(expired(key)),
        _ => Err(taken_over(key)),
    }
}

fn taken_over(key: &str) -> Failure {
    Failure::new(
        EXIT_BUSY,
        format!("{key}: not held by that token: taken over by another owner (nothing changed)"),
    )
}

fn expired(key: &str) -> Failure {
    Failure::new(
        EXIT_EXPIRED,
        format!("{key}: not held by that token: the lock had expired (nothing changed)"),
    )
}
