//! `dlock doctor`: the Redis server settings that weaken the lock's guarantees.

use serde_json::json;

use super::output::outln;
use super::{CliResult, Ctx, EXIT_BUSY, EXIT_OK};

/// Lists every weakness the runtime finds on its server(s), or says there is none; exit 1
/// when there is one.
pub(super) async fn doctor(ctx: &Ctx) -> CliResult<u8> {
    let weaknesses = ctx.runtime.weaknesses().await;
    if ctx.json {
        let list: Vec<_> = weaknesses
            .iter()
            .map(|w| {
                json!({
                    "server": w.server,
                    "setting": w.setting,
                    "value": w.value,
                    "risk": w.risk,
                    "fix": w.fix,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({ "redis": ctx.runtime.redis_url(), "weaknesses": list })
        )?;
    } else if weaknesses.is_empty() {
        outln!(
            "{}: no setting weakens the lock's guarantees",
            ctx.runtime.redis_url()
        )?;
    } else {
        for w in &weaknesses {
            outln!(
                "{}: {} {}\n  risk: {}\n  fix:  {}",
                w.server,
                w.setting,
                w.value,
                w.risk,
                w.fix
            )?;
        }
    }
    Ok(if weaknesses.is_empty() {
        EXIT_OK
    } else {
        EXIT_BUSY
    })
}
