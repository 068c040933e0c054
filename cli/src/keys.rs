//! `acquire`, `release`, `extend` and `status`: one lock operation each.

use std::time::Duration;

use dlock_host::{Deadline, KeyState};
use serde_json::json;

use super::output::outln;
use super::{CliResult, Ctx, EXIT_BUSY, EXIT_OK, Failure, epoch_ms};

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
            Ok(()) => format!("{}; the lock was released", unprinted.message),
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
    match handle.release().await {
        Ok(()) => Ok(EXIT_OK),
        Err(dlock_host::Error::NotHeld) => Err(not_owner(key)),
        Err(e) => Err(ctx.fail(e)),
    }
}

pub(super) async fn extend(ctx: &Ctx, key: &str, token: &str, ttl: Duration) -> CliResult<u8> {
    let client = ctx.client(false).await?;
    let handle = client.attach(key, token).await.map_err(|e| ctx.fail(e))?;
    match handle.extend(ttl).await {
        Ok(()) => {}
        Err(dlock_host::Error::NotHeld) => return Err(not_owner(key)),
        Err(e) => return Err(ctx.fail(e)),
    }
    if ctx.json {
        let info = handle.info();
        outln!("{}", json!({ "expires_at_ms": epoch_ms(info.expires_at) }))?;
    }
    Ok(EXIT_OK)
}

pub(super) async fn status(ctx: &Ctx, key: &str) -> CliResult<u8> {
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

fn not_owner(key: &str) -> Failure {
    Failure::new(
        EXIT_BUSY,
        format!("{key}: not held by that token (nothing changed)"),
    )
}
