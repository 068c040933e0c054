//! Redis forgetting its script cache (`SCRIPT FLUSH`, a restart) is invisible to callers: the
//! host reloads the script once on `NOSCRIPT`.

use std::time::Duration;

use dlock_host::bundled::BundledScript;
use dlock_tests::{client, get, raw, redis};

async fn script_flush(conn: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn script_flush_between_calls_is_transparent() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    for _ in 0..3 {
        script_flush(&mut conn).await;
        let lock = client
            .acquire("job", Duration::from_secs(30))
            .await
            .unwrap();
        script_flush(&mut conn).await;
        assert!(client.is_locked("job").await.unwrap());
        script_flush(&mut conn).await;
        lock.extend(Duration::from_secs(30)).await.unwrap();
        script_flush(&mut conn).await;
        lock.release().await.unwrap();
        assert_eq!(get(&mut conn, "job").await, None);
    }
}

#[tokio::test]
async fn scripts_are_loaded_under_their_bundled_sha1() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    client
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    client.is_locked("job").await.unwrap();
    let by_name = |name: &str| {
        BundledScript::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .unwrap()
            .sha1()
    };
    let shas = [
        by_name("acquire"),
        by_name("release"),
        by_name("check"),
        by_name("extend"),
    ];
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&shas)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Every script that ran is cached under its build-time SHA1; extend never ran.
    assert_eq!(exists, [true, true, true, false]);
    // Redis names each source with the SHA1 the host computed at build time.
    for script in BundledScript::ALL {
        let sha1: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(sha1, script.sha1());
    }
}
