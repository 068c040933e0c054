//! The limits on one `redis-eval` call's keys and arguments.
//!
//! Self-contained (no dependencies) so that the fuzz target in `fuzz/` can include it and
//! exercise exactly this code.

/// Bounds on the keys and arguments of one call. Keys must be non-empty, free of control
/// characters, at most `max_key_bytes` long, and inside `key_namespace`.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Most keys in one call.
    pub max_keys: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Every key starts with this, or is the fence counter `{KEY}:fence` of a key that does.
    pub key_namespace: String,
    /// Most bytes of keys and arguments together.
    pub max_request_bytes: usize,
}

impl RequestLimits {
    /// Whether a call with these keys and arguments is within the limits; the reason when it
    /// is not.
    pub fn check(&self, keys: &[String], args: &[String]) -> Result<(), String> {
        if keys.len() > self.max_keys {
            return Err(format!(
                "{} keys in one call; the limit is {}",
                keys.len(),
                self.max_keys
            ));
        }
        for key in keys {
            self.check_key(key)?;
        }
        let bytes: usize = keys.iter().chain(args).map(String::len).sum();
        if bytes > self.max_request_bytes {
            return Err(format!(
                "{bytes} bytes of keys and arguments; the limit is {}",
                self.max_request_bytes
            ));
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("an empty key".into());
        }
        if key.len() > self.max_key_bytes {
            return Err(format!(
                "a key of {} bytes; the limit is {}",
                key.len(),
                self.max_key_bytes
            ));
        }
        if key.chars().any(char::is_control) {
            return Err(format!("a key with control characters: {key:?}"));
        }
        let ns = self.key_namespace.as_str();
        let inside = key.starts_with(ns)
            || key
                .strip_prefix('{')
                .and_then(|rest| rest.strip_suffix("}:fence"))
                .is_some_and(|locked| locked.starts_with(ns));
        if !inside {
            return Err(format!("the key {key:?} is outside the namespace {ns:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_keys: 4,
            max_key_bytes: 32,
            key_namespace: "app:".into(),
            max_request_bytes: 96,
        }
    }

    proptest! {
        #[test]
        fn accepted_requests_are_inside_every_limit(
            keys in prop::collection::vec("(app:|\\{app:|other:|)\\PC{0,40}(\\}:fence)?|.{0,8}", 0..6),
            args in prop::collection::vec(".{0,40}", 0..4),
        ) {
            let limits = limits();
            if limits.check(&keys, &args).is_ok() {
                prop_assert!(keys.len() <= limits.max_keys);
                let total: usize = keys.iter().chain(&args).map(String::len).sum();
                prop_assert!(total <= limits.max_request_bytes);
                for key in &keys {
                    prop_assert!(!key.is_empty() && key.len() <= limits.max_key_bytes);
                    prop_assert!(!key.chars().any(char::is_control));
                    let inside = key.starts_with("app:")
                        || (key.starts_with("{app:") && key.ends_with("}:fence"));
                    prop_assert!(inside, "{:?} accepted outside the namespace", key);
                }
            }
        }
    }
}
