//! Where the locks live: one Redis (a primary, or the primary Sentinel names), a Redis
//! Cluster, or several independent primaries counted by majority (quorum mode, Redlock).

use crate::contract::quorum;
use crate::error::{Error, Result};

use crate::redis::url::redact_url;

pub use crate::contract::MAX_QUORUM_NODES;

/// The Redis deployment a runtime takes its locks on.
///
/// A `&str` or `String` is a [`Topology::Single`], so `Runtime::builder("redis://...")` keeps
/// working as it did.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One logical Redis: `redis://[user:password@]host:port[/db]`, `rediss://` (TLS),
    /// `unix:///path`, or `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/db]`
    /// (the primary of SERVICE as the Sentinels at those addresses name it, default port
    /// 26379, followed across failovers; the credentials are the primary's).
    Single(String),
    /// A Redis Cluster, found from one or more of its nodes (`redis://` or `rediss://` URLs
    /// with the same credentials). Each key goes to its hash slot's primary; a script's keys
    /// must share one slot.
    Cluster(Vec<String>),
    /// Independent primaries (2 to [`MAX_QUORUM_NODES`]; 3 or 5 in practice), each a URL as
    /// for [`Topology::Single`] (Sentinel included). A lock is held when a majority of them
    /// granted it within its validity (Redlock); fencing is refused.
    Quorum(Vec<String>),
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl From<&str> for Topology {
    fn from(url: &str) -> Self {
        Topology::Single(url.to_owned())
    }
}

impl From<&String> for Topology {
    fn from(url: &String) -> Self {
        Topology::Single(url.clone())
    }
}

impl From<String> for Topology {
    fn from(url: String) -> Self {
        Topology::Single(url)
    }
}

impl Topology {
    /// A Redis Cluster found from these seed nodes.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        Topology::Cluster(seeds.into_iter().map(Into::into).collect())
    }

    /// Quorum mode over these independent primaries.
    pub fn quorum<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Topology::Quorum(urls.into_iter().map(Into::into).collect())
    }

    /// Splits a comma-separated list of URLs (as in `DLOCK_REDIS_URL`). A comma starts a new
    /// URL only where a scheme follows (`redis://`, `rediss://`, `redis+sentinel://`,
    /// `unix:`), so the comma-separated Sentinels of a `redis+sentinel://` URL, or a comma in
    /// a password, stay in their URL.
    pub fn split_urls(list: &str) -> Vec<String> {
        let starts_url = |rest: &str| {
            rest.starts_with("unix:")
                || rest.split_once("://").is_some_and(|(scheme, _)| {
                    !scheme.is_empty()
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                })
        };
        let mut urls: Vec<String> = Vec::new();
        for part in list.split(',') {
            match urls.last_mut() {
                Some(last) if !starts_url(part) => {
                    last.push(',');
                    last.push_str(part);
                }
                _ => urls.push(part.to_owned()),
            }
        }
        urls.retain(|url| !url.is_empty());
        urls
    }

    /// The URLs, as given.
    pub fn urls(&self) -> &[String] {
        match self {
            Topology::Single(url) => std::slice::from_ref(url),
            Topology::Cluster(urls) | Topology::Quorum(urls) => urls,
        }
    }

    /// How many independent primaries the component sees (`node-count`): 1 but in quorum
    /// mode.
    pub fn nodes(&self) -> usize {
        match self {
            Topology::Quorum(urls) => urls.len(),
            Topology::Single(_) | Topology::Cluster(_) => 1,
        }
    }

    /// For messages: the URLs without passwords, and the mode.
    pub fn describe(&self) -> String {
        let urls = || {
            self.urls()
                .iter()
                .map(|url| redact_url(url))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Topology::Single(url) => redact_url(url),
            Topology::Cluster(_) => format!("cluster {}", urls()),
            Topology::Quorum(nodes) => format!(
                "quorum of {} ({} needed) {}",
                nodes.len(),
                quorum(u32::try_from(nodes.len()).unwrap_or(u32::MAX)),
                urls()
            ),
        }
    }

    /// Refuses what cannot work: no URL, a quorum of one or of more than
    /// [`MAX_QUORUM_NODES`], the same primary twice in a quorum (it would vote twice).
    pub(crate) fn check(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidArgument(m));
        match self {
            Topology::Single(_) => Ok(()),
            Topology::Cluster(seeds) if seeds.is_empty() => {
                invalid("a Redis Cluster needs at least one seed node URL".into())
            }
            Topology::Cluster(_) => Ok(()),
            Topology::Quorum(nodes) if !(2..=MAX_QUORUM_NODES).contains(&nodes.len()) => {
                invalid(format!(
                    "quorum mode takes 2 to {MAX_QUORUM_NODES} independent Redis primaries \
                     (3 or 5 in practice), not {}",
                    nodes.len()
                ))
            }
            Topology::Quorum(nodes) => {
                for (i, url) in nodes.iter().enumerate() {
                    if nodes[..i].contains(url) {
                        return invalid(format!(
                            "{} is named twice in the quorum: each primary must count once",
                            redact_url(url)
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_of_one_too_many_or_with_a_primary_twice_are_refused() {
        assert!(Topology::quorum(["redis://a"]).check().is_err());
        let ten: Vec<String> = (0..10).map(|i| format!("redis://h{i}")).collect();
        assert!(Topology::quorum(ten).check().is_err());
        let twice = Topology::quorum(["redis://a", "redis://b", "redis://a"]);
        assert!(twice.check().unwrap_err().to_string().contains("twice"));
        assert!(
            Topology::quorum(["redis://a", "redis://b", "redis://c"])
                .check()
                .is_ok()
        );
        assert!(Topology::cluster(Vec::<String>::new()).check().is_err());
    }

    #[test]
    fn url_lists_split_where_a_scheme_follows_a_comma() {
        assert_eq!(
            Topology::split_urls("redis://a:1,rediss://:p,w@b:2,unix:///s"),
            ["redis://a:1", "rediss://:p,w@b:2", "unix:///s"]
        );
        assert_eq!(
            Topology::split_urls("redis+sentinel://a:1,b:2,c:3/svc,redis://d"),
            ["redis+sentinel://a:1,b:2,c:3/svc", "redis://d"]
        );
        assert!(Topology::split_urls("").is_empty());
    }

    #[test]
    fn descriptions_never_show_passwords() {
        let t = Topology::quorum(["redis://:pw1@a:1", "redis://u:pw2@b:2", "redis://c:3"]);
        let shown = t.describe();
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        assert!(shown.starts_with("quorum of 3 (2 needed) "), "{shown}");
        assert_eq!(format!("{t:?}"), shown);
    }
}
