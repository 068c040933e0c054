//! `redis+sentinel://` URLs: the primary of a service, as Redis Sentinel names it.
//!
//! `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/db]`: the
//! Sentinels at those addresses (default port 26379) are asked which primary serves SERVICE,
//! and asked again whenever that primary stops answering or turns out to be a replica (after
//! a failover). The credentials and db are the primary's; the Sentinels are reached without
//! credentials or TLS.

use percent_encoding::percent_decode_str;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisResult};

use crate::redis::tls::TlsConfig;

/// The scheme of a Sentinel URL.
pub(crate) const SCHEME: &str = "redis+sentinel://";
/// The Sentinels' port when the URL gives none.
pub(crate) const DEFAULT_PORT: u16 = 26379;

/// What a `redis+sentinel://` URL says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) service: String,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

fn decoded(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "credentials that are not UTF-8 once percent-decoded".to_owned())
}

impl SentinelUrl {
    /// Parses a `redis+sentinel://` URL; the reason when it is malformed (without the URL,
    /// which may hold a password).
    pub(crate) fn parse(url: &str) -> Result<SentinelUrl, String> {
        let rest = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("a Sentinel URL starts with {SCHEME}"))?;
        let (credentials, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => (
                    Some(decoded(user)?).filter(|u| !u.is_empty()),
                    Some(decoded(password)?),
                ),
                None => (Some(decoded(userinfo)?), None),
            },
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("no service name: redis+sentinel://HOST[:PORT][,HOST[:PORT]...]/SERVICE")?;
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = match host.strip_prefix('[') {
                Some(v6) => {
                    let (name, after) = v6
                        .split_once(']')
                        .ok_or("an IPv6 Sentinel host without its ']'")?;
                    (name, after.strip_prefix(':'))
                }
                None => match host.rsplit_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (host, None),
                },
            };
            let port = match port {
                None => DEFAULT_PORT,
                Some(port) => port
                    .parse::<u16>()
                    .map_err(|_| format!("the Sentinel port {port:?} is not a number"))?,
            };
            if name.is_empty() {
                return Err("an empty Sentinel host".into());
            }
            sentinels.push((name.to_owned(), port));
        }
        let mut segments = path.trim_end_matches('/').split('/');
        let service = segments.next().unwrap_or_default().to_owned();
        if service.is_empty() {
            return Err("no service name after the Sentinel hosts".into());
        }
        let db = match segments.next() {
            None => 0,
            Some(db) => db
                .parse()
                .map_err(|_| format!("the db {db:?} is not a number"))?,
        };
        if segments.next().is_some() {
            return Err("a Sentinel URL's path is /SERVICE[/db]".into());
        }
        Ok(SentinelUrl {
            sentinels,
            service,
            db,
            username,
            password,
        })
    }

    /// A client that asks the Sentinels for the service's primary, with `tls` for the
    /// primary when it is given certificates (the Sentinels themselves are reached in plain
    /// TCP).
    pub(crate) fn client(
        &self,
        tls: &TlsConfig,
        tcp: redis::io::tcp::TcpSettings,
    ) -> RedisResult<SentinelClient> {
        let nodes = self
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(nodes, &self.service, SentinelServerType::Master)?
                .set_client_to_redis_db(self.db)
                .set_client_to_redis_tcp_settings(tcp);
        if let Some(user) = &self.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(certificates) = tls.certificates() {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_certificates(certificates);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_hosts_service_db_and_the_primarys_credentials() {
        let url = SentinelUrl::parse("redis+sentinel://u:p%40ss@a:1,b,[::1]:3/mymaster/2").unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                sentinels: vec![
                    ("a".into(), 1),
                    ("b".into(), DEFAULT_PORT),
                    ("::1".into(), 3)
                ],
                service: "mymaster".into(),
                db: 2,
                username: Some("u".into()),
                password: Some("p@ss".into()),
            }
        );
        let url = SentinelUrl::parse("redis+sentinel://:secret@127.0.0.1:26379/svc").unwrap();
        assert_eq!(
            (url.username, url.password.as_deref()),
            (None, Some("secret"))
        );
        assert_eq!(url.db, 0);
    }

    #[test]
    fn malformed_sentinel_urls_are_refused_without_echoing_the_password() {
        for bad in [
            "redis+sentinel://:secret@a:1",
            "redis+sentinel://:secret@a:1/",
            "redis+sentinel://:secret@a:x/svc",
            "redis+sentinel://:secret@a:1/svc/x",
            "redis+sentinel://:secret@,a/svc",
        ] {
            let reason = SentinelUrl::parse(bad).unwrap_err();
            assert!(!reason.contains("secret"), "{reason}");
        }
    }
}
