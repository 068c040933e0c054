//! TLS for real: a `redis-server` serving TLS with certificates the test made, the client
//! authenticated by its certificate, and the minimal ACL user of docs/SECURITY.md.

use std::time::Duration;

use dlock_host::{Error, LockOptions, Runtime};
use dlock_tests::tls::{Certificates, TlsRedis};
use dlock_tests::{dbsize, get, minimal_acl_user, raw};

#[tokio::test]
async fn rediss_works_end_to_end_with_the_servers_ca_a_client_certificate_and_the_minimal_acl() {
    let tls = TlsRedis::start(true).unwrap();
    minimal_acl_user(&tls.server, "dlock", "s3cret").await;
    let certs = &tls.certs;
    let runtime = Runtime::builder(tls.url(Some(("dlock", "s3cret"))))
        .with_tls_root_ca(certs.ca_pem.as_bytes())
        .with_tls_client_cert(
            certs.client_cert_pem.as_bytes(),
            certs.client_key_pem.as_bytes(),
        )
        .build()
        .await
        .unwrap();
    assert!(!runtime.redis_url().contains("s3cret"));
    let options = LockOptions::default()
        .with_key_prefix("app:")
        .with_fencing(true);
    let client = runtime.client(options).await.unwrap();
    let lock = client
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lock.info().fence, Some(1));
    let mut admin = raw(&tls.server).await;
    assert_eq!(
        get(&mut admin, "app:job").await.as_deref(),
        Some(lock.info().token.as_str())
    );
    lock.extend(Duration::from_secs(60)).await.unwrap();
    lock.release().await.unwrap();
    assert!(!client.is_locked("job").await.unwrap());
    // The same user without the client certificate is turned away by the server.
    let err = Runtime::builder(tls.url(Some(("dlock", "s3cret"))))
        .with_tls_root_ca(certs.ca_pem.as_bytes())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_certificate_the_client_does_not_trust_is_refused_with_a_clear_error() {
    let tls = TlsRedis::start(false).unwrap();
    // The system's roots do not include the CA the test made.
    let err = Runtime::connect(&tls.url(None)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(text.contains("certificate"), "{text}");
    // Nor does another CA.
    let other = Certificates::generate("another CA");
    let err = Runtime::builder(tls.url(None))
        .with_tls_root_ca(other.ca_pem.as_bytes())
        .build()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server's TLS certificate is not trusted"),
        "{text}"
    );
    assert!(text.contains(&format!("rediss://127.0.0.1:{}", tls.tls_port)));
    assert_eq!(dbsize(&mut raw(&tls.server).await).await, 0);
}
