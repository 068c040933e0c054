//! The workload: worker processes whose lanes contend for a few keys, each lane in one of
//! three roles, and a process replaced by a new one (new lanes, new history processes) when it
//! dies or stops answering.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dlock_tests::driver::{AcquireOptions, Driven};
use dlock_tests::stats::XorShift;
use dlock_tests::tool::ToolResult;
use dlock_tests::workers::{Outcome, Reply};

use super::rig::{Kind, Rig};
use super::{
    CALL_BOUND, KEEP_LEASE, KEEP_TTL, KEPT, KEYS, LONG_TTL, QUORUM_TTL, TTL, WAIT, resource_of,
    set_of,
};

/// What a lane does, round after round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Waits for one of [`KEYS`], then a fenced write and a guarded add under it, then releases.
    Plain,
    /// As `Plain`, with a long lease, and gives its acquire up at a random moment; after a
    /// cancelled acquire, waits for the same key at once (the client's next call must not wait
    /// on its own cancelled call's lock).
    Cancel,
    /// Takes [`KEPT`] and keeps it alive with the watchdog while it adds to the kept set
    /// (unfenced), checking before each add that the lock is not lost.
    Keep,
}

fn roles(kind: Kind, lanes: u32) -> Vec<Role> {
    (0..lanes)
        .map(|lane| match (kind, lane) {
            (Kind::Keep, _) => Role::Keep,
            (Kind::Rust, 1) => Role::Cancel,
            _ => Role::Plain,
        })
        .collect()
}

/// Runs worker processes of `kind` (the `keeper`-th keeping one, for [`Kind::Keep`]) one after
/// the other until the run stops: each process's lanes run their roles until the process dies
/// or a lane gets no answer (then the process is killed and replaced).
pub async fn process(
    rig: Arc<Rig>,
    kind: Kind,
    keeper: usize,
    think: Duration,
    seed: u64,
) -> ToolResult<()> {
    let mut generation = 0u64;
    while !rig.stopping() {
        let lanes = rig.process(kind, keeper).await?;
        let pid = lanes[0].worker.pid();
        let roles = roles(kind, rig.lanes);
        let mut runs = tokio::task::JoinSet::new();
        for (i, (lane, role)) in lanes.into_iter().zip(roles).enumerate() {
            let lane_seed = seed ^ (generation << 16) ^ i as u64;
            runs.spawn(run_lane(
                rig.clone(),
                lane,
                role,
                kind,
                keeper,
                think,
                lane_seed,
            ));
        }
        let mut ended = Vec::new();
        while let Some(lane) = runs.join_next().await {
            ended.push(lane.map_err(super::rig::fail)?);
        }
        // One lane found the process gone or silent: make sure it is gone for all of them.
        if let Some(lane) = ended.first_mut() {
            lane.kill().await;
        }
        rig.forget(pid).await;
        generation += 1;
    }
    Ok(())
}

/// One lane's rounds, until the run stops or its process fails it; hands the lane back.
async fn run_lane(
    rig: Arc<Rig>,
    mut lane: Driven,
    role: Role,
    kind: Kind,
    keeper: usize,
    think: Duration,
    seed: u64,
) -> Driven {
    let mut rng = XorShift::new(seed);
    let mut round = 0u64;
    while !rig.stopping() {
        round += 1;
        let alive = match role {
            Role::Plain => plain_round(&rig, &mut lane, &mut rng, kind, round, None).await,
            Role::Cancel => cancel_round(&rig, &mut lane, &mut rng, kind, round).await,
            Role::Keep => keep_round(&rig, &mut lane, &mut rng, keeper, round).await,
        };
        if !alive {
            lane.kill().await;
            break;
        }
        let think_ms = think.as_millis() as u64;
        if think_ms > 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(think_ms + 1))).await;
        }
    }
    lane
}

/// An acquire that waits [`WAIT`], given up after `cancel_after`; `judge_wait`: W1 judges a
/// busy ending (for keys whose every holder's lease the history knows).
fn waiting(cancel_after: Option<Duration>, judge_wait: bool) -> AcquireOptions {
    AcquireOptions {
        wait: WAIT,
        deadline: CALL_BOUND,
        cancel_after,
        judge_wait,
    }
}

/// The lease of a plain acquire.
fn plain_ttl(rig: &Rig) -> Duration {
    if rig.lock.quorum() { QUORUM_TTL } else { TTL }
}

/// Whether a call got an answer at all (`None`: the process is gone or silent).
fn answered(reply: &Option<Reply>) -> bool {
    reply.is_some()
}

/// One round of [`Role::Plain`] (or, with `cancel_after`, of [`Role::Cancel`]'s first
/// acquire), on a key drawn from [`KEYS`] (or `key`). Returns whether the process answered.
async fn plain_round(
    rig: &Rig,
    lane: &mut Driven,
    rng: &mut XorShift,
    kind: Kind,
    round: u64,
    cancel: Option<(usize, Duration)>,
) -> bool {
    let index = cancel.map_or_else(|| rng.below(KEYS.len() as u64) as usize, |(i, _)| i);
    let key = KEYS[index];
    let options = waiting(cancel.map(|(_, after)| after), true);
    let ttl = if cancel.is_some() {
        LONG_TTL
    } else {
        plain_ttl(rig)
    };
    let got = lane.acquire_with(key, ttl, options).await;
    let Some(reply) = got else {
        return false;
    };
    if reply.cancelled {
        return cancelled_then_again(rig, lane, rng, kind, round, index).await;
    }
    if reply.outcome != Outcome::Ok {
        return true;
    }
    work_under(rig, lane, rng, kind, round, index, reply).await
}

/// [`Role::Cancel`]: an acquire given up after a random time up to 1.5 s.
async fn cancel_round(
    rig: &Rig,
    lane: &mut Driven,
    rng: &mut XorShift,
    kind: Kind,
    round: u64,
) -> bool {
    let index = rng.below(KEYS.len() as u64) as usize;
    let after = Duration::from_millis(rng.below(1500));
    plain_round(rig, lane, rng, kind, round, Some((index, after))).await
}

/// After a cancelled acquire of `KEYS[index]`: the same lane waits for the same key at once.
async fn cancelled_then_again(
    rig: &Rig,
    lane: &mut Driven,
    rng: &mut XorShift,
    kind: Kind,
    round: u64,
    index: usize,
) -> bool {
    let Some(reply) = lane
        .acquire_with(KEYS[index], plain_ttl(rig), waiting(None, true))
        .await
    else {
        return false;
    };
    if reply.outcome != Outcome::Ok {
        return true;
    }
    work_under(rig, lane, rng, kind, round, index, reply).await
}

/// Under a lock of `KEYS[index]` just acquired: an observation, a fenced write and a guarded
/// add (fenced when the lock has a fence), then the release and an observation after it.
async fn work_under(
    rig: &Rig,
    lane: &mut Driven,
    rng: &mut XorShift,
    kind: Kind,
    round: u64,
    index: usize,
    acquired: Reply,
) -> bool {
    let key = KEYS[index];
    rig.holds[usize::from(kind == Kind::Node)].fetch_add(1, Ordering::Relaxed);
    let token = acquired.token.clone().unwrap_or_default();
    rig.observe(key, &token).await;
    let element = format!("c{}r{round}", lane.id);
    let fenced = acquired.fence.is_some();
    if fenced && !answered(&lane.fenced_write(&resource_of(index), &element).await) {
        return false;
    }
    match lane.guarded_read(&set_of(index), &element).await {
        None => return false,
        Some(r) if r.outcome == Outcome::Ok => {
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
            if !answered(&lane.guarded_write(&set_of(index), &element, fenced).await) {
                return false;
            }
        }
        Some(_) => {}
    }
    release_and_look(rig, lane, key, &token).await
}

/// Releases the lane's lock of `key` (`token`); after a release that said released, looks at
/// the key on every primary (R1).
async fn release_and_look(rig: &Rig, lane: &mut Driven, key: &str, token: &str) -> bool {
    let Some(reply) = lane.release().await else {
        return false;
    };
    if reply.outcome == Outcome::Ok
        && let Some(release) = lane.last_op()
    {
        rig.observe_release(release, key, token).await;
    }
    true
}

/// One round of [`Role::Keep`] on the `keeper`-th keeping worker: take [`KEPT`] for
/// [`KEEP_LEASE`], keep it alive at [`KEEP_TTL`], and add to its set until done or the lock is
/// lost.
async fn keep_round(
    rig: &Rig,
    lane: &mut Driven,
    rng: &mut XorShift,
    keeper: usize,
    round: u64,
) -> bool {
    let Some(reply) = lane
        .acquire_with(KEPT, KEEP_LEASE, waiting(None, false))
        .await
    else {
        return false;
    };
    if reply.outcome != Outcome::Ok {
        return true;
    }
    rig.holds[0].fetch_add(1, Ordering::Relaxed);
    let token = reply.token.clone().unwrap_or_default();
    if lane.keep(KEEP_TTL).await.is_none() {
        return false;
    }
    rig.keeping_since(keeper);
    let set = set_of(KEYS.len());
    // 2 to 9 s of work: a few extends each, the first the one that shortens the lease.
    for step in 0..rng.below(40) + 20 {
        match lane.lost().await {
            None => return false,
            Some(true) => break,
            Some(false) => {}
        }
        let element = format!("c{}r{round}s{step}", lane.id);
        match lane.guarded_read(&set, &element).await {
            None => return false,
            Some(r) if r.outcome == Outcome::Ok => {
                tokio::time::sleep(Duration::from_millis(50 + rng.below(100))).await;
                if !answered(&lane.guarded_write(&set, &element, false).await) {
                    return false;
                }
            }
            Some(_) => {}
        }
    }
    release_and_look(rig, lane, KEPT, &token).await
}
