//! Unit tests of the contract.

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::policy::DEFAULT_MAX_REQUEST_BYTES;
use crate::*;

#[test]
fn keys_must_be_nonempty_short_and_printable() {
    assert!(check_key("jobs:nightly").is_ok());
    assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    assert!(check_key("").unwrap_err().contains("empty"));
    assert!(
        check_key(&"k".repeat(MAX_KEY_BYTES + 1))
            .unwrap_err()
            .contains("limit is 512")
    );
    assert!(check_key("a\nb").unwrap_err().contains("control character"));
    assert!(check_key("a\0b").unwrap_err().contains("control character"));
}

#[test]
fn empty_prefix_is_allowed_but_control_characters_are_not() {
    assert!(check_prefix("").is_ok());
    assert!(check_prefix("app\r").unwrap_err().contains("control"));
}

#[test]
fn durations_are_bounded() {
    assert!(check_duration_ms("ttl", 1, false).is_ok());
    assert!(check_duration_ms("ttl", MAX_DURATION_MS, false).is_ok());
    assert!(check_duration_ms("timeout", 0, true).is_ok());
    assert!(
        check_duration_ms("ttl", 0, false)
            .unwrap_err()
            .contains("positive")
    );
    assert!(
        check_duration_ms("ttl", u64::MAX, false)
            .unwrap_err()
            .contains("over the limit")
    );
}

#[test]
fn fence_keys_share_the_lock_keys_slot() {
    assert_eq!(fence_key("job").unwrap(), "{job}:fence");
    assert_eq!(fence_key("app:{job}").unwrap(), "app:{job}::fence");
    assert_eq!(fence_key("{job}").unwrap(), "{job}::fence");
    assert_eq!(fence_key("a{b").unwrap(), "{a{b}:fence");
    // An empty tag does not count: the whole key is hashed.
    assert!(fence_key("a{}").is_err());
    assert!(fence_key("a}b").is_err());
}

#[test]
fn every_fence_key_is_recognised_as_a_fence_counter_and_refused_as_a_lock() {
    for lock in ["job", "app:{job}", "a{b", "x", "app:job", "{x}"] {
        let counter = fence_key(lock).unwrap();
        assert!(is_fence_counter(&counter), "{counter}");
        assert!(
            check_lock_key(&counter)
                .unwrap_err()
                .contains("fence counter")
        );
        assert!(check_lock_key(lock).is_ok(), "{lock}");
    }
    for not_a_counter in [
        "job:fence",
        "{}:fence",
        "fence",
        ":fence",
        "{job}:fenced",
        "app:{job}:fence",
        "{a}b}:fence",
        "{x::fence",
    ] {
        assert!(!is_fence_counter(not_a_counter), "{not_a_counter}");
    }
}

#[test]
fn hash_slots_are_the_ones_redis_cluster_computes() {
    // `CLUSTER KEYSLOT`'s answers (its documentation's examples, and CRC16/XMODEM's check
    // value 0x31c3).
    assert_eq!(hash_slot(b"123456789"), 0x31c3);
    assert_eq!(hash_slot(b"somekey"), 11058);
    assert_eq!(hash_slot(b"foo"), 12182);
    assert_eq!(hash_slot(b"foo{hash_tag}"), 2515);
    assert_eq!(hash_slot(b"bar{hash_tag}"), 2515);
    assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
    assert_eq!(hash_slot(b"{job}:signal"), hash_slot(b"job"));
    // An empty tag is no tag: the whole key is hashed.
    assert_ne!(hash_slot(b"{}job"), hash_slot(b"job"));
}

/// Every string of up to `len` characters from `alphabet`, then each of them with every
/// companion suffix (and its tagged form) appended: the keys most likely to collide.
fn adversarial_keys(alphabet: &[char], len: usize) -> std::vec::Vec<String> {
    let mut keys = std::vec![String::new()];
    let mut layer = std::vec![String::new()];
    for _ in 0..len {
        layer = layer
            .iter()
            .flat_map(|k| alphabet.iter().map(move |c| std::format!("{k}{c}")))
            .collect();
        keys.extend(layer.iter().cloned());
    }
    let stems = keys.clone();
    for stem in &stems {
        for c in Companion::ALL {
            keys.push(std::format!("{stem}{}", c.suffix()));
            keys.push(std::format!("{stem}:{}", c.suffix()));
            keys.push(std::format!("{stem}}}{}", c.suffix()));
        }
    }
    keys.retain(|k| !k.is_empty());
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn distinct_lock_keys_never_share_a_companion_key_and_companions_stay_in_the_slot() {
    let mut named: std::collections::HashMap<String, (String, Companion)> =
        std::collections::HashMap::new();
    let keys = adversarial_keys(&['x', '{', '}', ':'], 6);
    let mut locks = 0;
    for key in &keys {
        let is_lock = check_lock_key(key).is_ok();
        assert_eq!(is_lock, companion_of(key).is_none(), "{key:?}");
        if !is_lock {
            continue;
        }
        locks += 1;
        for c in Companion::ALL {
            let Ok(companion) = companion_key(key, c) else {
                // Only a key with '}' and no hash tag has no companions.
                assert!(key.contains('}') && !has_hash_tag(key), "{key:?}");
                continue;
            };
            assert_eq!(
                hash_slot(companion.as_bytes()),
                hash_slot(key.as_bytes()),
                "{key:?} -> {companion:?}"
            );
            assert_eq!(companion_of(&companion), Some(c), "{companion:?}");
            assert!(check_lock_key(&companion).is_err(), "{companion:?}");
            assert!(is_companion_key(&companion, key, c), "{companion:?}");
            for other in Companion::ALL.into_iter().filter(|&o| o != c) {
                assert!(!is_companion_key(&companion, key, other), "{companion:?}");
            }
            assert_eq!(
                wrapped_lock_key(&companion),
                (!has_hash_tag(key)).then_some(key.as_str()),
                "{companion:?}"
            );
            if let Some((first, first_c)) = named.insert(companion.clone(), (key.clone(), c)) {
                panic!("{key:?} ({c:?}) and {first:?} ({first_c:?}) share {companion:?}");
            }
        }
    }
    assert!(locks > 1000, "{locks} lock keys checked");
    // The cases that collided before the tagged form gained its second colon.
    for (a, b) in [
        ("x", "{x}"),
        ("x", "{{x}}"),
        ("{x}x", "{x}"),
        ("x:", "{x:}"),
    ] {
        for c in Companion::ALL {
            assert_ne!(companion_key(a, c), companion_key(b, c), "{a:?} {b:?}");
        }
    }
    for no_companions in ["x}", "{}x", "}"] {
        assert!(fence_key(no_companions).is_err(), "{no_companions:?}");
    }
}

#[test]
fn no_key_outside_a_namespace_passes_for_a_companion_of_one_inside() {
    // `{a}b}:fence` ends like a wrapped companion of `a}b`, which has none.
    assert_eq!(wrapped_lock_key("{a}b}:fence"), None);
    assert_eq!(wrapped_lock_key("{a}:fence"), Some("a"));
    assert_eq!(wrapped_lock_key("{a}::fence"), None, "a tagged key's own");
    assert_eq!(wrapped_lock_key("{}:fence"), None);
}

#[test]
fn only_lowercase_uuid_v4_tokens_are_the_components_own() {
    assert!(is_uuid_v4("0f8fad5b-d9cb-469f-a165-70867728950e"));
    for other in [
        "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "0f8fad5b-d9cb-169f-a165-70867728950e",
        "0f8fad5b-d9cb-469f-c165-70867728950e",
        "0f8fad5bd9cb469fa16570867728950e",
        "redis-py-token",
        "",
    ] {
        assert!(!is_uuid_v4(other), "{other}");
    }
}

fn no_jitter(base_ms: u64, max_ms: u64) -> Backoff {
    Backoff {
        base_ms,
        max_ms,
        jitter: false,
    }
}

#[test]
fn first_attempt_is_immediate_and_later_ones_double() {
    let b = no_jitter(100, u64::MAX);
    let delays: Vec<u64> = (1..=6).map(|n| b.delay_ms(n, || unreachable!())).collect();
    assert_eq!(delays, [0, 100, 200, 400, 800, 1600]);
}

#[test]
fn delays_stop_growing_at_the_cap() {
    let b = no_jitter(100, 1000);
    assert_eq!(b.delay_ms(5, || 0), 800);
    assert_eq!(b.delay_ms(6, || 0), 1000);
    assert_eq!(b.delay_ms(40, || 0), 1000);
}

#[test]
fn huge_attempt_numbers_saturate_instead_of_overflowing() {
    let b = no_jitter(u64::MAX / 2, u64::MAX);
    assert_eq!(b.delay_ms(4, || 0), u64::MAX);
    assert_eq!(b.delay_ms(u32::MAX, || 0), u64::MAX);
}

#[test]
fn capped_takes_the_smaller_cap() {
    assert_eq!(no_jitter(100, 5000).capped(1000).max_ms, 1000);
    assert_eq!(no_jitter(100, 500).capped(1000).max_ms, 500);
}

#[test]
fn full_jitter_stays_within_zero_and_the_delay() {
    let b = Backoff {
        jitter: true,
        ..no_jitter(100, 10_000)
    };
    assert_eq!(b.delay_ms(3, || 0), 0);
    assert_eq!(b.delay_ms(3, || 200), 200);
    assert_eq!(b.delay_ms(3, || 201), 0);
    assert_eq!(b.delay_ms(3, || u64::MAX), u64::MAX % 201);
}

#[test]
fn zero_base_never_asks_for_randomness() {
    let b = Backoff {
        jitter: true,
        ..no_jitter(0, 1000)
    };
    assert_eq!(b.delay_ms(5, || unreachable!()), 0);
}

#[test]
fn the_total_backoff_follows_the_capped_schedule_with_or_without_jitter() {
    let defaults = no_jitter(
        DEFAULT_RETRY_DELAY_MS.into(),
        DEFAULT_MAX_RETRY_DELAY_MS.into(),
    );
    // 100 + 200 + 400 + 800 + 1600
    assert_eq!(defaults.total_ms(DEFAULT_RETRY_COUNT), 3100);
    let jittery = Backoff {
        jitter: true,
        ..defaults
    };
    assert_eq!(jittery.total_ms(DEFAULT_RETRY_COUNT), 3100);
    // 100 ms doubling to 3.2 s, then the 5 s cap for every later retry.
    assert_eq!(defaults.total_ms(10), 6300 + 5000 * 4);
    assert_eq!(
        defaults.total_ms(u32::MAX),
        6300 + 5000 * (u64::from(u32::MAX) - 6)
    );
}

#[test]
fn companion_keys_share_the_lock_keys_slot_and_are_recognised() {
    use crate::{Companion, companion_key, companion_of, wrapped_lock_key};
    assert_eq!(
        companion_key("job", Companion::Signal).unwrap(),
        "{job}:signal"
    );
    assert_eq!(
        companion_key("app:{job}", Companion::Waiters).unwrap(),
        "app:{job}::waiters"
    );
    assert!(companion_key("a}b", Companion::Signal).is_err());
    for companion in Companion::ALL {
        let key = companion_key("app:job", companion).unwrap();
        assert_eq!(companion_of(&key), Some(companion), "{key}");
        assert_eq!(wrapped_lock_key(&key), Some("app:job"));
    }
    for (lock, companion) in [("job", Companion::Signal), ("app:{j}", Companion::Waiters)] {
        let key = companion_key(lock, companion).unwrap();
        assert!(crate::is_companion_key(&key, lock, companion));
        assert!(!crate::is_companion_key(&key, "other", companion));
        assert!(!crate::is_companion_key(&key, lock, Companion::Fence));
    }
    assert!(!crate::is_companion_key(
        "{a}b}:signal",
        "a}b",
        Companion::Signal
    ));
    assert_eq!(companion_of("job:signal"), None);
    assert_eq!(wrapped_lock_key("app:{job}:fence"), None);
}

#[test]
fn no_script_has_two_shapes_of_the_same_size_and_each_starts_with_its_key() {
    for script in Script::ALL {
        let shapes = script.shapes();
        assert!(!shapes.is_empty(), "{script:?}");
        for (i, a) in shapes.iter().enumerate() {
            assert!(
                matches!(a.keys.first(), Some(KeyRole::Lock | KeyRole::Any)),
                "{script:?} {a:?}"
            );
            assert_eq!(script.shape(a.keys.len(), a.args.len()), Some(a));
            for b in &shapes[i + 1..] {
                assert!(
                    (a.keys.len(), a.args.len()) != (b.keys.len(), b.args.len()),
                    "{script:?}: {a:?} and {b:?}"
                );
            }
        }
        assert_eq!(Script::from_name(script.name()), Some(script));
        assert_eq!(Script::ALL[script.index()], script);
    }
    assert_eq!(Script::from_name("flushall"), None);
}

#[test]
fn the_default_request_cap_holds_the_largest_call_of_the_scripts() {
    // A fenced acquire that may wait, behind the longest key and prefix: the lock key, its
    // fence counter and its waiters' mark, a token, a TTL and a wait of the longest:
    // 768 + 776 + 778 + 36 + 13 + 13 bytes.
    assert_eq!(max_request_bytes(), 2384);
    let longest = format!(
        "{}{}",
        "p".repeat(MAX_PREFIX_BYTES),
        "k".repeat(MAX_KEY_BYTES)
    );
    let keys = [
        longest.clone(),
        companion_key(&longest, Companion::Fence).unwrap(),
        companion_key(&longest, Companion::Waiters).unwrap(),
    ];
    let longest_ms = format!("{MAX_DURATION_MS}");
    let sent: usize =
        keys.iter().map(String::len).sum::<usize>() + TOKEN_BYTES + 2 * longest_ms.len();
    assert_eq!(sent, max_request_bytes());
    const { assert!(DEFAULT_MAX_REQUEST_BYTES >= max_request_bytes()) };
}

#[test]
fn the_wit_names_carry_one_version() {
    assert_eq!(WIT_PACKAGE, format!("dlock:lock@{WIT_VERSION}"));
    assert_eq!(REDIS_INTERFACE, format!("dlock:lock/redis@{WIT_VERSION}"));
    assert_eq!(LOCK_INTERFACE, format!("dlock:lock/lock@{WIT_VERSION}"));
}
