//! TLS for the tests: a certificate authority made by the test (rcgen), a server and a client
//! certificate it signs, and a `redis-server` that serves TLS with them on a loopback port.
//!
//! The server also keeps a plain port (for readiness checks and for the test to arrange and
//! inspect Redis state as the default user); lock clients connect to the TLS port.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::RedisServer;

/// A CA and the certificates it signed, as PEM text and as files for `redis-server`.
pub struct Certificates {
    /// The CA's certificate (PEM): what a client must trust.
    pub ca_pem: String,
    /// The client certificate (PEM), for servers that authenticate clients.
    pub client_cert_pem: String,
    /// The client certificate's private key (PEM).
    pub client_key_pem: String,
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Certificates {
    /// A fresh CA named `name`, a server certificate for `localhost` and `127.0.0.1`, and a
    /// client certificate, all signed by it.
    pub fn generate(name: &str) -> Certificates {
        let ca = ca(name);
        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(["localhost".into(), "127.0.0.1".into()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "dlock test server");
        let server_cert = server.signed_by(&server_key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "dlock test client");
        let client_cert = client.signed_by(&client_key, &ca).unwrap();

        let dir = tempfile::Builder::new()
            .prefix("dlock-tls-")
            .tempdir()
            .unwrap();
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.crt", &ca.pem());
        write("server.crt", &server_cert.pem());
        write("server.key", &server_key.serialize_pem());
        Certificates {
            ca_pem: ca.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            dir,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding `ca.crt`, `server.crt` and `server.key`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A `redis-server` serving TLS (certificates from [`Certificates`]) on `tls_port`, and plain
/// TCP on its [`RedisServer::port`] for the test's own use.
pub struct TlsRedis {
    /// The server; its plain-TCP URL is `server.url()`.
    pub server: RedisServer,
    /// The TLS port on 127.0.0.1.
    pub tls_port: u16,
    /// The certificates it serves with.
    pub certs: Certificates,
}

impl TlsRedis {
    /// Starts a server with a new CA. With `client_auth`, it accepts only clients that show a
    /// certificate signed by that CA (`tls-auth-clients yes`).
    pub fn start(client_auth: bool) -> io::Result<TlsRedis> {
        let certs = Certificates::generate("dlock test CA");
        let auth = if client_auth { "yes" } else { "no" };
        let mut last = None;
        for _ in 0..5 {
            let tls_port = dlock_testing::free_port()?;
            let port = tls_port.to_string();
            let files = [certs.file("server.crt"), certs.file("server.key")];
            let ca = certs.file("ca.crt");
            let args = [
                "--tls-port",
                &port,
                "--tls-cert-file",
                &files[0].display().to_string(),
                "--tls-key-file",
                &files[1].display().to_string(),
                "--tls-ca-cert-file",
                &ca.display().to_string(),
                "--tls-auth-clients",
                auth,
            ]
            .map(|s| s.to_owned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match RedisServer::start_with(&args) {
                Ok(server) => {
                    return Ok(TlsRedis {
                        server,
                        tls_port,
                        certs,
                    });
                }
                Err(e) if e.to_string().contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }

    /// `rediss://[user:password@]127.0.0.1:TLS_PORT`.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => {
                format!("rediss://{user}:{password}@127.0.0.1:{}", self.tls_port)
            }
            None => format!("rediss://127.0.0.1:{}", self.tls_port),
        }
    }
}
