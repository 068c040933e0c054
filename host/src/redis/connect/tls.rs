//! TLS for `rediss://`: which certificate authority to trust and which certificate to show,
//! and the process-wide rustls crypto provider.

/// The TLS settings of every connection of a runtime (to a primary, the cluster's nodes, the
/// Sentinels' primary). By default `rediss://` trusts the system's root certificates and
/// shows no client certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Trust only this certificate authority (PEM) instead of the system's roots.
    pub(crate) root_ca: Option<Vec<u8>>,
    /// Show this certificate chain and private key (PEM) to servers that authenticate
    /// clients (`tls-auth-clients yes`).
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("root_ca", &self.root_ca.as_ref().map(|_| "PEM"))
            .field("client_cert", &self.client.as_ref().map(|_| "PEM, key ***"))
            .finish()
    }
}

impl TlsConfig {
    /// The settings for redis-rs, when any differ from the defaults.
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        if *self == TlsConfig::default() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_ca.clone(),
        })
    }
}

/// A client for `info` with these TLS settings.
pub(crate) fn client(
    info: redis::ConnectionInfo,
    tls: &TlsConfig,
) -> redis::RedisResult<redis::Client> {
    match tls.certificates() {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
}

/// Makes ring the process's rustls crypto provider, unless the process chose one already.
/// Without a provider, rustls panics on the first TLS connection.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A hint for connection errors that come from the server's certificate, which rustls names
/// tersely (`invalid peer certificate: UnknownIssuer`).
pub(crate) fn hint(error: &redis::RedisError) -> &'static str {
    let text = error.to_string();
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        " (the server's TLS certificate is not trusted: check the certificate authority \
         given with --tls-ca / RuntimeBuilder::with_tls_root_ca, or the system's roots)"
    } else {
        ""
    }
}
