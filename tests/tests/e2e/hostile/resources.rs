//! Hostile components against the bounds on what they use: computation (in an export and in a
//! start function), memory, stack, randomness and time.

use super::*;

#[tokio::test]
async fn an_endless_loop_traps_and_poisons_only_its_client() {
    let server = redis();
    let policy = Policy::default().with_max_compute(Duration::from_millis(200));
    let runtime = hostile_runtime(&server, policy).await;
    let spinner = hostile(&runtime, "spin").await;
    let bystander = hostile(&runtime, "forged-release").await;
    let err = hang_guard(spinner.acquire("app:job", TTL))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Trap(e) if format!("{e:#}").contains("computed too long")),
        "{err:?}"
    );
    assert!(matches!(
        spinner.acquire("app:job", TTL).await,
        Err(Error::Poisoned)
    ));
    // Another client of the same runtime still works.
    assert!(matches!(
        bystander.acquire("app:job", TTL).await,
        Err(Error::NotHeld)
    ));
}

#[tokio::test]
async fn a_loop_in_the_start_function_fails_instantiation() {
    let server = redis();
    let component = LockComponent::from_file(HOSTILE_START, Allocation::default()).unwrap();
    let policy = Policy::default().with_max_compute(Duration::from_millis(200));
    let runtime = Runtime::builder(server.url())
        .with_component(component)
        .with_policy(policy)
        .build()
        .await
        .unwrap();
    let err = hang_guard(runtime.client(LockOptions::default()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Component(e) if format!("{e:#}").contains("computed too long")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_memory_bomb_is_refused_memory_and_traps() {
    let server = redis();
    let runtime = hostile_runtime(&server, Policy::default()).await;
    let err = hang_guard(
        hostile(&runtime, "memory-bomb")
            .await
            .acquire("app:job", TTL),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    let bystander = hostile(&runtime, "forged-release").await;
    assert!(matches!(
        bystander.acquire("app:job", TTL).await,
        Err(Error::NotHeld)
    ));
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack_and_traps() {
    let server = redis();
    let runtime = hostile_runtime(&server, Policy::default()).await;
    let err = hang_guard(hostile(&runtime, "recursion").await.acquire("app:job", TTL))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
}

#[tokio::test]
async fn asking_for_megabytes_of_randomness_traps() {
    let server = redis();
    let runtime = hostile_runtime(&server, Policy::default()).await;
    let err = hang_guard(
        hostile(&runtime, "random-bomb")
            .await
            .acquire("app:job", TTL),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, Error::Trap(e) if format!("{e:#}").contains("random bytes")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_sleeper_gets_no_endless_budget_and_is_cut_off_at_its_deadline() {
    let server = redis();
    let policy = Policy::default().with_command_timeout(Duration::from_millis(100));
    let runtime = hostile_runtime(&server, policy).await;
    let sleeper = hostile(&runtime, "sleep").await;
    // Duration::MAX would once have meant "no deadline at all".
    let err = hang_guard(sleeper.wait_for_lock("app:job", TTL, Deadline::after(Duration::MAX)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // A sleep of u64::MAX nanoseconds ends at the call's deadline, and the call traps there.
    let options = LockOptions::default()
        .with_key_prefix("sleep")
        .with_retry_count(0);
    let err = hang_guard(
        runtime
            .client(options)
            .await
            .unwrap()
            .acquire("app:job", TTL),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, Error::Trap(e) if format!("{e:#}").contains("time budget")),
        "{err:?}"
    );
}
