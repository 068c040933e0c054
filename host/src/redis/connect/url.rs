//! Redis URLs in messages: never with their password.

/// `url` fit for messages and logs: anything that may be a password is replaced by `***`.
///
/// Conservative by design, it never needs `url` to parse and redacts more when in doubt:
/// - everything before the last `@` is credentials: the user name (up to the first `:`) is kept
///   only when a `:` follows it, the rest becomes `***`, so a password containing unescaped
///   `/`, `@`, `:`, `?` or `#` is hidden whole;
/// - when a `?` comes before that `@` (the password may contain the `?`, or the query the `@`),
///   everything after the first `:` or `?` is hidden;
/// - in the query, only `db=<digits>` and `protocol=<2|3|resp2|resp3>` stay visible, in order:
///   from the first other parameter (`pass=`, `password=`, `user=`, anything) to the end of
///   `url`, all is `***`; a fragment other than `#insecure` is hidden likewise;
/// - a port that is not all digits (`redis://user:password` without `@host`) and everything
///   after it are hidden.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = split_scheme(url);
    let query = rest.find('?');
    match rest.rfind('@') {
        Some(at) if query.is_none_or(|q| q > at) => {
            let userinfo = &rest[..at];
            let user = userinfo.find(':').map_or("", |colon| &userinfo[..=colon]);
            format!("{head}{user}***@{}", redact_location(&rest[at + 1..]))
        }
        Some(_) => {
            let q = query.unwrap_or(rest.len());
            let cut = rest[..q].find(':').unwrap_or(q);
            let keep = &rest[..(cut + 1).min(rest.len())];
            format!("{head}{keep}***")
        }
        None => format!("{head}{}", redact_location(rest)),
    }
}

/// Splits `url` after its scheme (`redis://`, or `unix:` in `unix:/path`); `("", url)` when it
/// has none.
fn split_scheme(url: &str) -> (&str, &str) {
    let Some(colon) = url.find(':') else {
        return ("", url);
    };
    let scheme = &url[..colon];
    let is_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return ("", url);
    }
    let end = if url[colon..].starts_with("://") {
        colon + 3
    } else {
        colon + 1
    };
    url.split_at(end)
}

/// Redacts `host[:port][/path][?query][#fragment]` (what follows the credentials).
fn redact_location(location: &str) -> String {
    let authority_end = location.find(['/', '?', '#']).unwrap_or(location.len());
    let authority = &location[..authority_end];
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let port = &authority[host_end..];
    let numeric_port = |p: &str| {
        p.strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
    };
    if !port.is_empty() && !numeric_port(port) {
        return format!("{}:***", &authority[..host_end]);
    }
    let after = &location[authority_end..];
    let (path, tail) = match after.find(['?', '#']) {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    let mut shown = format!("{authority}{path}");
    let (query, fragment) = match tail.strip_prefix('?') {
        Some(query) => match query.find('#') {
            Some(hash) => (Some(&query[..hash]), Some(&query[hash + 1..])),
            None => (Some(query), None),
        },
        None => (None, tail.strip_prefix('#')),
    };
    if let Some(query) = query {
        shown.push('?');
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                shown.push('&');
            }
            if !harmless_parameter(param) {
                shown.push_str("***");
                return shown;
            }
            shown.push_str(param);
        }
    }
    match fragment {
        None => {}
        Some("insecure") => shown.push_str("#insecure"),
        Some(_) => shown.push_str("#***"),
    }
    shown
}

/// A query parameter that cannot carry a secret: `db=<digits>` or `protocol=<version>`.
fn harmless_parameter(param: &str) -> bool {
    match param.split_once('=') {
        Some(("db", db)) => !db.is_empty() && db.bytes().all(|b| b.is_ascii_digit()),
        Some(("protocol", version)) => matches!(version, "2" | "3" | "resp2" | "resp3"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::redact_url;

    #[test]
    fn passwords_never_appear_in_redacted_urls() {
        let cases = [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://me:s3cret@h", "rediss://me:***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("redis://me@h", "redis://***@h"),
            ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
            ("redis://u:p@ss@h", "redis://u:***@h"),
            ("redis://:pa/ss@host", "redis://:***@host"),
            ("redis://u:p?ss@h/0", "redis://u:***"),
            ("redis://:p#ss@h", "redis://:***@h"),
            ("redis://:p%40ss@h", "redis://:***@h"),
            ("redis://:a://b@h", "redis://:***@h"),
            ("unix:///nope.sock?pass=sekrit", "unix:///nope.sock?***"),
            ("unix:///s?db=1&password=x&db=2", "unix:///s?db=1&***"),
            (
                "redis+unix:///s?db=3&protocol=3",
                "redis+unix:///s?db=3&protocol=3",
            ),
            ("unix:/s?pass=p@ss", "unix:/s?***"),
            ("unix:/s?db=9#x", "unix:/s?db=9#***"),
            ("rediss://h/#insecure", "rediss://h/#insecure"),
            ("redis://[::1]:6379/1", "redis://[::1]:6379/1"),
            ("redis://[::1]:pw", "redis://[::1]:***"),
            ("redis://user:password", "redis://user:***"),
            ("redis://:pa/ss", "redis://:***"),
            ("localhost:6379", "localhost:6379"),
            ("", ""),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    /// Characters a generated password is made of: everything that can be typed into a URL,
    /// unescaped delimiters included, except `*` (the redaction's own mark).
    const PASSWORD: &str = "[a-zA-Z0-9/@:?#&=%+!$,;~._-]{3,16}";

    /// Percent-encodes every byte that is not alphanumeric.
    fn percent_encoded(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// A Redis URL with `PW` where the password goes, in one of the forms redis-rs accepts
    /// (TCP with `user:password@`, Unix sockets with `pass=` in the query) or near misses.
    fn url_template() -> impl Strategy<Value = String> {
        let tcp = (
            prop::sample::select(vec!["redis", "rediss", "valkey", "valkeys"]),
            prop::option::of("[a-z][a-z0-9_]{0,6}"),
            prop::sample::select(vec!["127.0.0.1", "redis.internal", "[::1]", "h"]),
            prop::option::of(1u16..),
            prop::option::of(0u8..16),
            prop::option::of(prop::sample::select(vec![
                "?protocol=3",
                "?protocol=resp2",
                "#insecure",
            ])),
        )
            .prop_map(|(scheme, user, host, port, db, tail)| {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let db = db.map(|d| format!("/{d}")).unwrap_or_default();
                let tail = tail.unwrap_or_default();
                let user = user.unwrap_or_default();
                format!("{scheme}://{user}:PW@{host}{port}{db}{tail}")
            });
        let unix = (
            prop::sample::select(vec!["unix://", "unix:", "redis+unix://", "valkey+unix://"]),
            "(/[a-z0-9._-]{1,8}){1,3}",
            prop::sample::select(vec!["pass", "password"]),
            prop::collection::vec(
                prop::sample::select(vec!["db=3", "protocol=3", "user=me", "x=1"]),
                0..3,
            ),
            0usize..4,
        )
            .prop_map(|(scheme, path, name, mut others, at)| {
                let at = at.min(others.len());
                let secret = format!("{name}=PW");
                let mut params: Vec<&str> = others.drain(..at).collect();
                params.push(&secret);
                params.extend(others);
                format!("{scheme}{path}?{}", params.join("&"))
            });
        prop_oneof![tcp, unix]
    }

    proptest! {
        #[test]
        fn a_generated_password_never_survives_redaction(
            template in url_template(),
            password in PASSWORD,
            encode in any::<bool>(),
        ) {
            let written = if encode { percent_encoded(&password) } else { password.clone() };
            let elsewhere = template.replace("PW", "");
            prop_assume!(!elsewhere.contains(&password) && !elsewhere.contains(&written));
            let url = template.replace("PW", &written);
            let shown = redact_url(&url);
            prop_assert!(!shown.contains(&written), "{url} -> {shown}");
            prop_assert!(!shown.contains(&password), "{url} -> {shown}");
        }
    }
}
