//! The test tools themselves: `torture` against a Redis it is given.

use dlock_tests::{RedisServer, dbsize, exists, raw};

#[tokio::test]
async fn torture_on_a_given_redis_injects_no_server_wide_fault_and_keeps_its_password_and_db() {
    let server = RedisServer::start_with(&["--requirepass", "tortured-pw"]).unwrap();
    let given = format!("{}/3", server.url());
    assert!(given.contains(":tortured-pw@"), "{given}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_torture"))
        .env("DLOCK_REDIS_URL", &given)
        .args([
            "--json",
            "--duration",
            "10s",
            "--nemesis-interval",
            "100ms",
            "--workers",
            "3",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["redis"], "given", "{v}");
    let faults = v["faults"].to_string();
    for server_wide in ["PauseRedis", "ClientPause", "ScriptFlush", "CrashRedis"] {
        assert!(!faults.contains(server_wide), "{faults}");
    }
    assert!(!stderr.contains("tortured-pw") && !stdout.contains("tortured-pw"));

    let mut db0 = raw(&server).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut db0)
        .await
        .unwrap();
    for server_wide in [
        "cmdstat_client|pause",
        "cmdstat_script|flush",
        "cmdstat_debug",
    ] {
        assert!(
            !stats.contains(server_wide),
            "the given Redis saw {server_wide}"
        );
    }
    assert!(
        stats.contains("cmdstat_evalsha"),
        "the workers never reached it: {stats}"
    );
    assert_eq!(dbsize(&mut db0).await, 0, "the workers wrote to db 0");
    let mut db3 = redis::Client::open(given.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert!(
        exists(&mut db3, "{dlock-torture:hot}:fence").await,
        "the workers' fence counter is not in db 3"
    );
}
