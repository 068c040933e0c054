//! `dlock doctor` and the eviction warning every command gives, against real `redis-server`s
//! configured as users run them.

mod common;

use common::{dlock, ran};
use dlock_tests::{RedisServer, minimal_acl_user};

fn server(args: &[&str]) -> RedisServer {
    RedisServer::start_with(args).unwrap()
}

#[tokio::test]
async fn doctor_passes_a_durable_server_and_names_each_weakening_setting() {
    let durable = server(&["--appendonly", "yes", "--appendfsync", "always"]);
    let r = ran(dlock(&durable).arg("doctor")).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no setting weakens"), "{}", r.stdout);

    let weak = server(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let r = ran(dlock(&weak).args(["--json", "doctor"])).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let settings: Vec<&str> = v["weaknesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["setting"].as_str().unwrap())
        .collect();
    assert_eq!(settings, ["maxmemory-policy", "appendfsync"]);
    assert!(
        v["weaknesses"][0]["risk"]
            .as_str()
            .unwrap()
            .contains("fence counters"),
        "{v}"
    );
}

#[tokio::test]
async fn every_command_warns_once_on_stderr_when_the_server_can_evict_locks() {
    let evicting = server(&["--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru"]);
    let r = ran(dlock(&evicting).args(["status", "job"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "unlocked");
    assert_eq!(
        r.stderr.matches("maxmemory-policy is volatile-lru").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("noeviction"), "{}", r.stderr);
    // Without a memory bound nothing is evicted: no warning, but the doctor names it.
    let unbounded = server(&["--maxmemory-policy", "volatile-lru"]);
    let r = ran(dlock(&unbounded).args(["status", "job"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("maxmemory"), "{}", r.stderr);
    let r = ran(dlock(&unbounded).arg("doctor")).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("maxmemory-policy volatile-lru"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn a_user_who_may_not_read_the_settings_gets_no_warning_and_an_unreadable_report() {
    let evicting = server(&["--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru"]);
    minimal_acl_user(&evicting, "app", "secret").await;
    let url = format!("redis://app:secret@127.0.0.1:{}", evicting.port());
    let mut cmd = common::dlock_bare();
    let r = ran(cmd.args(["--redis", &url, "status", "app:job"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("maxmemory"), "{}", r.stderr);
    let mut cmd = common::dlock_bare();
    let r = ran(cmd.args(["--redis", &url, "doctor"])).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("unreadable"), "{}", r.stdout);
    assert!(r.stdout.contains("no permissions"), "{}", r.stdout);
}
