//! The facts the documentation states are the `dlock-contract` crate's: each default or limit a
//! document gives is checked against the constant it restates, and every `dlock:lock` WIT name
//! in the repository carries the contract's version. Change the constant and these fail until
//! the text follows.

use dlock_host::contract::{self, Script, WIT_VERSION, policy};

use dlock_tests::repository::{self, root as repo};

/// `path`'s text with every run of whitespace (line breaks, a comment's `*` or `///` aside)
/// made one space, so that a statement may be wrapped anywhere.
fn flattened(path: &str) -> String {
    std::fs::read_to_string(repo().join(path))
        .unwrap()
        .split_whitespace()
        .filter(|w| !matches!(*w, "*" | "///" | "//" | "//!"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that `path` states each of `statements` (whitespace-insensitive).
fn states(path: &str, statements: &[String]) {
    let text = flattened(path);
    for statement in statements {
        assert!(
            text.contains(statement.as_str()),
            "{path} no longer says {statement:?}: the contract's value changed, or the text did"
        );
    }
}

fn number_word(n: usize) -> &'static str {
    [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ][n]
}

/// `10^12` for [`contract::MAX_DURATION_MS`], which must be a power of ten to be written so.
fn max_duration_power() -> String {
    let exp = contract::MAX_DURATION_MS.ilog10();
    assert_eq!(10u64.pow(exp), contract::MAX_DURATION_MS);
    format!("10^{exp}")
}

#[test]
fn the_security_table_states_the_contracts_defaults() {
    states(
        "docs/SECURITY.md",
        &[
            format!(
                "exactly the bundled component's {} scripts",
                number_word(Script::ALL.len())
            ),
            format!(
                "namespace empty (any key); {}; {} keys per call; {} of keys+arguments",
                kib(policy::DEFAULT_MAX_KEY_BYTES),
                policy::DEFAULT_MAX_KEYS,
                kib(policy::DEFAULT_MAX_REQUEST_BYTES)
            ),
            format!("a {}-byte lowercase UUID v4", contract::TOKEN_BYTES),
            format!("a TTL of 1 to {} ms", max_duration_power()),
            format!("(1-{} printable bytes)", policy::MAX_FOREIGN_TOKEN_BYTES),
            format!(
                "{} MiB per second (`with_max_bytes_per_second`)",
                policy::DEFAULT_MAX_BYTES_PER_SECOND >> 20
            ),
            format!(
                "{} (`with_max_reply_bytes`)",
                kib(policy::DEFAULT_MAX_REPLY_BYTES)
            ),
            format!(
                "{} s of computation (`with_max_compute`)",
                policy::DEFAULT_MAX_COMPUTE_MS / 1000
            ),
            format!(
                "{} s (`with_command_timeout`)",
                policy::DEFAULT_COMMAND_TIMEOUT_MS / 1000
            ),
            format!(
                "{} per second (`with_max_evals_per_second`)",
                policy::DEFAULT_MAX_EVALS_PER_SECOND
            ),
            format!(
                "{} blocking connections (`with_max_blocking_connections`)",
                policy::DEFAULT_MAX_BLOCKING_CONNECTIONS
            ),
            format!(
                "**StoreLimits** ({} MiB linear memory",
                policy::MAX_MEMORY_BYTES >> 20
            ),
        ],
    );
}

#[test]
fn the_node_readme_states_the_contracts_defaults() {
    states(
        "node/README.md",
        &[
            format!(
                "| script allowlist | the component's {} scripts, by SHA1 |",
                Script::ALL.len()
            ),
            format!(
                "a dlock token ({}-byte lowercase UUID v4), a TTL of 1..{} ms",
                contract::TOKEN_BYTES,
                max_duration_power()
            ),
            format!(
                "| `allowForeignTokens` | {} | release/extend may name other clients' tokens (1-{} printable bytes)",
                policy::DEFAULT_ALLOW_FOREIGN_TOKENS,
                policy::MAX_FOREIGN_TOKEN_BYTES
            ),
            format!("| `keyNamespace` | '{}' |", policy::DEFAULT_KEY_NAMESPACE),
            format!(
                "| `maxKeys`, `maxKeyBytes`, `maxRequestBytes` | {}, {}, {} |",
                policy::DEFAULT_MAX_KEYS,
                policy::DEFAULT_MAX_KEY_BYTES,
                policy::DEFAULT_MAX_REQUEST_BYTES
            ),
            format!("| `maxReplyBytes` | {} |", policy::DEFAULT_MAX_REPLY_BYTES),
            format!(
                "| `maxEvalsPerSecond` | {} |",
                policy::DEFAULT_MAX_EVALS_PER_SECOND
            ),
            format!(
                "| `maxBytesPerSecond` | {} MiB |",
                policy::DEFAULT_MAX_BYTES_PER_SECOND >> 20
            ),
            format!(
                "| `commandTimeoutMs` | {} |",
                policy::DEFAULT_COMMAND_TIMEOUT_MS
            ),
            format!(
                "| `maxMemoryBytes` | {} MiB |",
                policy::MAX_MEMORY_BYTES >> 20
            ),
            format!("| `maxComputeMs` | {} |", policy::DEFAULT_MAX_COMPUTE_MS),
        ],
    );
}

#[test]
fn the_rust_guide_states_the_contracts_lock_option_defaults() {
    let on_off = |on: bool, what: &str| {
        if on {
            what.to_owned()
        } else {
            format!("no {what}")
        }
    };
    states(
        "docs/RUST.md",
        &[
            format!(
                "defaults: {} retries, {} ms base delay doubling, {} s cap, {}, no prefix, {}, {} safety margin",
                contract::DEFAULT_RETRY_COUNT,
                contract::DEFAULT_RETRY_DELAY_MS,
                contract::DEFAULT_MAX_RETRY_DELAY_MS / 1000,
                on_off(contract::DEFAULT_JITTER, "jitter"),
                on_off(contract::DEFAULT_FENCING, "fencing"),
                if contract::DEFAULT_SAFETY_MARGIN_MS == 0 {
                    "no extend".to_owned()
                } else {
                    format!("a {} ms extend", contract::DEFAULT_SAFETY_MARGIN_MS)
                },
            ),
            format!(
                "(`Policy::with_max_blocking_connections`, {} by default)",
                policy::DEFAULT_MAX_BLOCKING_CONNECTIONS
            ),
        ],
    );
}

#[test]
fn the_wit_states_the_contracts_lock_option_defaults() {
    states(
        "wit/lock.wit",
        &[
            format!(
                "before it gives up with `not-acquired`. Default {}.",
                contract::DEFAULT_RETRY_COUNT
            ),
            format!(
                "... for the default {}). At least 1.",
                contract::DEFAULT_RETRY_DELAY_MS
            ),
            format!(
                "for `acquire`. Default {}; at least 1.",
                contract::DEFAULT_MAX_RETRY_DELAY_MS
            ),
            format!(
                "caps its delays at {} ms as well.",
                contract::WAIT_MAX_DELAY_MS
            ),
            format!(
                "clients spread out. Default {} (the exact schedule above).",
                contract::DEFAULT_JITTER
            ),
            format!(
                "as the lock's fencing token. Default {}.",
                contract::DEFAULT_FENCING
            ),
            format!(
                "The handle is then lost. Default {} (refuse only once validity has run out).",
                contract::DEFAULT_SAFETY_MARGIN_MS
            ),
        ],
    );
}

fn kib(bytes: usize) -> String {
    assert_eq!(bytes % 1024, 0, "{bytes} is not a whole number of KiB");
    format!("{} KiB", bytes / 1024)
}

#[test]
fn every_wit_name_in_the_repository_carries_the_contracts_version() {
    // Not the change log, which names past versions.
    let files = repository::files(&repo())
        .into_iter()
        .filter(|path| !path.ends_with("CHANGELOG.md"));
    let mut seen = 0;
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for (at, _) in text.match_indices("dlock:lock") {
            let rest = &text[at + "dlock:lock".len()..];
            let rest = rest
                .strip_prefix('/')
                .map(|r| r.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '-'))
                .unwrap_or(rest);
            let Some(version) = rest.strip_prefix('@') else {
                continue;
            };
            let version: String = version
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let version = version.trim_end_matches('.');
            if version.is_empty() {
                // A version filled in elsewhere (`@${WIT_VERSION}`, `@{version}`).
                continue;
            }
            assert_eq!(
                version,
                WIT_VERSION,
                "{} names dlock:lock at another version than the contract's",
                file.display()
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 5,
        "only {seen} versioned WIT names found: is the scan looking?"
    );
}

/// The `key = value` lines of `section` (`[workspace.package]`, `[lints.rust]`) in a manifest.
fn manifest_section(path: &str, section: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    text.lines()
        .skip_while(|line| line.trim() != section)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// dlock-contract states its package fields and lints itself rather than inheriting them: the
/// guest's workspace reaches it too (through `guest/contract`), and would otherwise be asked
/// for them. They are the root workspace's, so a release changes them in one place and this
/// test names the other.
#[test]
fn the_contract_crates_manifest_says_what_the_workspace_says() {
    let contract = manifest_section("contract/Cargo.toml", "[package]");
    for (key, value) in manifest_section("Cargo.toml", "[workspace.package]") {
        assert!(
            contract.contains(&(key.clone(), value.clone())),
            "contract/Cargo.toml does not say {key} = {value} as Cargo.toml's [workspace.package] does"
        );
    }
    for kind in ["rust", "clippy"] {
        let lints = manifest_section("contract/Cargo.toml", &format!("[lints.{kind}]"));
        for lint in manifest_section("Cargo.toml", &format!("[workspace.lints.{kind}]")) {
            assert!(
                lints.contains(&lint),
                "contract/Cargo.toml's [lints.{kind}] lacks {} = {}",
                lint.0,
                lint.1
            );
        }
    }
}
