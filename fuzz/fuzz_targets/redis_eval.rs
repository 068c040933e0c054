//! Fuzzes what the host does with input a hostile component or a hostile Redis controls:
//! the validation of a `redis-eval` call's keys and arguments
//! (`host/src/redis/policy/limits.rs`) and the decoding of a Redis reply into what may cross
//! into the component (`host/src/redis/import/reply.rs`).
//! The target links `dlock-host` with only its `fuzzing` feature, so this is exactly the
//! host's code, without wasmtime.
//!
//! Oracles: nothing panics; an accepted request really is inside the limits, and a bundled
//! script's accepted arguments have its shape (dlock's own token, a TTL in range, no fence
//! counter as a lock); a decoded reply is never larger than its budget.

#![no_main]

use dlock_contract::{MAX_DURATION_MS, TOKEN_BYTES, is_fence_counter};
use dlock_host::bundled::BundledScript;
use dlock_host::redis::{Reply, RequestLimits, Scalar, flatten};
use libfuzzer_sys::fuzz_target;

const NAMESPACE: &str = "app:";
const REPLY_BUDGET: usize = 256;

fn limits() -> RequestLimits {
    RequestLimits {
        max_keys: 4,
        max_key_bytes: 64,
        key_namespace: NAMESPACE.to_owned(),
        max_request_bytes: 256,
        foreign_tokens: false,
    }
}

/// Splits `text` at `|` into keys, and after the first `#` into arguments.
fn request(text: &str) -> (Vec<String>, Vec<String>) {
    let (keys, args) = text.split_once('#').unwrap_or((text, ""));
    let split = |s: &str| s.split('|').map(str::to_owned).collect::<Vec<_>>();
    (
        split(keys),
        if args.is_empty() {
            Vec::new()
        } else {
            split(args)
        },
    )
}

fn check_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (keys, args) = request(&text);
    let limits = limits();
    if limits.check(&keys, &args).is_ok() {
        assert!(keys.len() <= limits.max_keys);
        let total: usize = keys.iter().chain(&args).map(String::len).sum();
        assert!(total <= limits.max_request_bytes);
        for key in &keys {
            assert!(
                !key.is_empty() && key.len() <= limits.max_key_bytes,
                "{key:?}"
            );
            assert!(!key.chars().any(char::is_control), "{key:?}");
            let inside = key.starts_with(NAMESPACE)
                || key
                    .strip_prefix('{')
                    .is_some_and(|k| k.starts_with(NAMESPACE));
            assert!(inside, "{key:?} accepted outside {NAMESPACE:?}");
        }
        for role in BundledScript::ALL {
            if limits.check_role(role, &keys, &args).is_ok() && role != BundledScript::Check {
                // A token-checked script only ever sees dlock's own tokens and real TTLs.
                let token = args[0].as_bytes();
                assert_eq!(
                    token.len(),
                    TOKEN_BYTES,
                    "{role:?} accepted token {:?}",
                    args[0]
                );
                assert_eq!(token[14], b'4', "{role:?} accepted token {:?}", args[0]);
                assert!(
                    !is_fence_counter(&keys[0]),
                    "{role:?} accepted a fence counter {:?} as a lock",
                    keys[0]
                );
                if let Some(ttl) = args.get(1) {
                    let ms: u64 = ttl.parse().expect("a decimal TTL");
                    assert!(
                        (1..=MAX_DURATION_MS).contains(&ms),
                        "{role:?} accepted TTL {ttl}"
                    );
                }
            }
        }
    }
}

fn scalar_bytes(s: &Scalar) -> usize {
    match s {
        Scalar::Bulk(b) => b.len(),
        Scalar::Status(s) => s.len(),
        Scalar::Nil | Scalar::Int(_) => 0,
    }
}

fn decode_reply(data: &[u8]) {
    let Ok(value) = redis::parse_redis_value(data) else {
        return;
    };
    if let Ok(reply) = flatten(value, REPLY_BUDGET) {
        let size = match &reply {
            Reply::Array(items) => items.iter().map(|s| 8 + scalar_bytes(s)).sum(),
            Reply::Bulk(b) => b.len(),
            Reply::Status(s) => s.len(),
            Reply::Nil | Reply::Int(_) => 0,
        };
        assert!(
            size <= REPLY_BUDGET,
            "{size} bytes crossed a {REPLY_BUDGET}-byte budget"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((selector, rest)) if selector % 2 == 0 => check_request(rest),
        Some((_, rest)) => decode_reply(rest),
        None => {}
    }
});
