//! TLS for real: a `redis-server` serving TLS with certificates the test made, and the
//! minimal ACL user of docs/SECURITY.md.

use dlock_host::{Error, Runtime};
use dlock_tests::tls::TlsRedis;
use dlock_tests::{dbsize, raw};

#[tokio::test]
async fn a_server_certificate_the_client_does_not_trust_is_refused_with_a_clear_error() {
    let tls = TlsRedis::start(false).unwrap();
    // The system's roots do not include the CA the test made.
    let err = Runtime::connect(&tls.url(None)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(text.contains("certificate"), "{text}");
    assert_eq!(dbsize(&mut raw(&tls.server).await).await, 0);
}
