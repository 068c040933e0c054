//! Fuzzes what the host does with input a hostile component or a hostile Redis controls:
//! the validation of a `redis-eval` call's keys and arguments
//! (`host/src/redis/policy/limits.rs`) and the decoding of a Redis reply into what may cross
//! into the component (`host/src/redis/import/reply.rs`).
//! The target links `dlock-host` with only its `fuzzing` feature, so this is exactly the
//! host's code, without wasmtime.
//!
//! Oracles: nothing panics; an accepted request really is inside the limits, and a bundled
//! script's accepted arguments have one of its shapes, each argument of its role's form
//! (dlock's own token, a duration or permit count in range, no fence counter as a lock); a
//! decoded reply is never larger than its budget.

#![no_main]

use dlock_contract::{
    ArgRole, KeyRole, MAX_DURATION_MS, MAX_PERMITS, TOKEN_BYTES, is_fence_counter,
};
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
            if limits.check_role(role, &keys, &args).is_err() {
                continue;
            }
            // An accepted call has one of the script's shapes, and each argument its role's
            // form: dlock's own token (foreign tokens are off here), a real duration or count.
            let shape = role
                .script()
                .shape(keys.len(), args.len())
                .unwrap_or_else(|| panic!("{role:?} accepted a call of no shape"));
            if shape.keys.first() == Some(&KeyRole::Lock) {
                assert!(
                    !is_fence_counter(&keys[0]),
                    "{role:?} accepted a fence counter {:?} as a lock",
                    keys[0]
                );
            }
            for (arg, want) in args.iter().zip(shape.args) {
                let number = |max: u64| {
                    let n: u64 = arg.parse().expect("a decimal number");
                    assert!((1..=max).contains(&n), "{role:?} accepted {want:?} {arg}");
                };
                match want {
                    ArgRole::NewToken | ArgRole::HeldToken => {
                        let token = arg.as_bytes();
                        assert_eq!(token.len(), TOKEN_BYTES, "{role:?} accepted token {arg:?}");
                        assert_eq!(token[14], b'4', "{role:?} accepted token {arg:?}");
                    }
                    ArgRole::Ttl | ArgRole::Wait => number(MAX_DURATION_MS),
                    ArgRole::Limit | ArgRole::Permits => number(MAX_PERMITS.into()),
                    ArgRole::Quiet => assert_eq!(arg, ArgRole::QUIET),
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
