//! The Node package's copy of the contract is generated from the `dlock-contract` crate:
//! `node/src/generated/contract.js` (the constants, defaults, script shapes and companion
//! naming) and `contract.d.ts` (their types, and the option interfaces whose documented
//! defaults come from the contract). The test fails while a generated file is stale;
//! `DLOCK_BLESS=1` (or `scripts/bundle`) rewrites them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dlock_host::contract::{
    self, ArgRole, Companion, KeyRole, Script, WIT_PACKAGE, WIT_VERSION, policy,
};

const HEADER: &str = "// Generated from the dlock-contract crate (contract/ in the repository) by\n\
// tests/tests/e2e/contract.rs: do not edit. `scripts/bundle` rewrites it; the test suite fails\n\
// while it is stale.\n";

fn generated() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/generated")
}

fn key_role(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Lock => "lock",
        KeyRole::Any => "any",
        KeyRole::Companion(c) => c.name(),
    }
}

/// `'a', 'b'` of `items`.
fn quoted<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lock options' defaults, as the Node API names them.
fn lock_defaults() -> Vec<(&'static str, String)> {
    vec![
        ("retryCount", contract::DEFAULT_RETRY_COUNT.to_string()),
        ("retryDelayMs", contract::DEFAULT_RETRY_DELAY_MS.to_string()),
        (
            "maxRetryDelayMs",
            contract::DEFAULT_MAX_RETRY_DELAY_MS.to_string(),
        ),
        ("jitter", contract::DEFAULT_JITTER.to_string()),
        ("fencing", contract::DEFAULT_FENCING.to_string()),
        (
            "safetyMarginMs",
            contract::DEFAULT_SAFETY_MARGIN_MS.to_string(),
        ),
    ]
}

/// The policy's defaults, as the Node API names them.
fn policy_defaults() -> Vec<(&'static str, String)> {
    vec![
        (
            "commandTimeoutMs",
            policy::DEFAULT_COMMAND_TIMEOUT_MS.to_string(),
        ),
        ("maxKeys", policy::DEFAULT_MAX_KEYS.to_string()),
        ("maxKeyBytes", policy::DEFAULT_MAX_KEY_BYTES.to_string()),
        (
            "keyNamespace",
            format!("'{}'", policy::DEFAULT_KEY_NAMESPACE),
        ),
        (
            "maxRequestBytes",
            policy::DEFAULT_MAX_REQUEST_BYTES.to_string(),
        ),
        ("maxReplyBytes", policy::DEFAULT_MAX_REPLY_BYTES.to_string()),
        (
            "maxEvalsPerSecond",
            policy::DEFAULT_MAX_EVALS_PER_SECOND.to_string(),
        ),
        (
            "maxBytesPerSecond",
            policy::DEFAULT_MAX_BYTES_PER_SECOND.to_string(),
        ),
        (
            "allowForeignTokens",
            policy::DEFAULT_ALLOW_FOREIGN_TOKENS.to_string(),
        ),
        ("maxComputeMs", policy::DEFAULT_MAX_COMPUTE_MS.to_string()),
        ("maxMemoryBytes", policy::MAX_MEMORY_BYTES.to_string()),
    ]
}

/// `{ a: 1, b: 2 }`.
fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", body.join(", "))
}

/// A byte count in the units the docs use (`4 MiB`, `64 KiB`, `100 bytes`).
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The numeric constants the Node package gets: what each is, its name, its value.
fn constants() -> [(&'static str, &'static str, u64); 10] {
    [
        (
            "Longest lock key, in bytes (without the client's prefix).",
            "MAX_KEY_BYTES",
            contract::MAX_KEY_BYTES as u64,
        ),
        (
            "Longest key prefix, in bytes.",
            "MAX_PREFIX_BYTES",
            contract::MAX_PREFIX_BYTES as u64,
        ),
        (
            "Longest token `attach` accepts, and the longest foreign token the policy lets through.",
            "MAX_TOKEN_BYTES",
            contract::MAX_TOKEN_BYTES as u64,
        ),
        (
            "Length of the component's own tokens: a UUID v4 in hyphenated lowercase form.",
            "TOKEN_BYTES",
            contract::TOKEN_BYTES as u64,
        ),
        (
            "Longest TTL or wait, in milliseconds.",
            "MAX_DURATION_MS",
            contract::MAX_DURATION_MS,
        ),
        (
            "`waitForLock` never waits longer than this between two attempts, in milliseconds.",
            "WAIT_MAX_DELAY_MS",
            contract::WAIT_MAX_DELAY_MS,
        ),
        (
            "Longest token of another client that release and extend accept when the policy allows them.",
            "MAX_FOREIGN_TOKEN_BYTES",
            policy::MAX_FOREIGN_TOKEN_BYTES as u64,
        ),
        (
            "Most bytes one `get-random-bytes` call may ask of the host; a larger request traps the call.",
            "MAX_RANDOM_BYTES",
            contract::MAX_RANDOM_BYTES,
        ),
        (
            "Most permits a counting semaphore may have, and so the most one acquisition may take.",
            "MAX_PERMITS",
            contract::MAX_PERMITS.into(),
        ),
        (
            "Quorum mode: the most independent primaries (at least 2).",
            "MAX_QUORUM_NODES",
            contract::MAX_QUORUM_NODES as u64,
        ),
    ]
}

fn render_js() -> String {
    let mut js = String::from(HEADER);
    let w = &mut js;
    writeln!(w, "\nconst frozen = (v) => {{\n  if (typeof v === 'object' && v !== null) {{\n    for (const x of Object.values(v)) frozen(x);\n    Object.freeze(v);\n  }}\n  return v;\n}};").unwrap();
    writeln!(w, "\n/** The version of the `dlock:lock` WIT package. */\nexport const WIT_VERSION = '{WIT_VERSION}';").unwrap();
    writeln!(
        w,
        "/** The WIT package with its version. */\nexport const WIT_PACKAGE = '{WIT_PACKAGE}';"
    )
    .unwrap();
    for (doc, name, value) in constants() {
        writeln!(w, "/** {doc} */\nexport const {name} = {value};").unwrap();
    }
    let suffixes: Vec<(&str, String)> = Companion::ALL
        .iter()
        .map(|c| (c.name(), format!("'{}'", c.suffix())))
        .collect();
    let descriptions: Vec<(&str, String)> = Companion::ALL
        .iter()
        .map(|c| (c.name(), format!("\"{}\"", c.description())))
        .collect();
    writeln!(w, "/** The suffix naming each companion key of a lock key. */\nexport const COMPANION_SUFFIXES = frozen({});", object(&suffixes)).unwrap();
    writeln!(w, "/** What each companion key is, as error messages name it. */\nexport const COMPANION_DESCRIPTIONS = frozen({});", object(&descriptions)).unwrap();
    writeln!(w, "/** Each script's accepted shapes of call: keys and arguments in order, by role (`lock`, `any`,\n * a companion's name; an `ArgRole`). */\nexport const SCRIPTS = frozen({{").unwrap();
    for script in Script::ALL {
        writeln!(w, "  {}: [", script.name()).unwrap();
        for shape in script.shapes() {
            writeln!(
                w,
                "    {{ keys: [{}], args: [{}] }},",
                quoted(shape.keys.iter().map(|&k| key_role(k))),
                quoted(shape.args.iter().map(|&a| a.name()))
            )
            .unwrap();
        }
        writeln!(w, "  ],").unwrap();
    }
    writeln!(w, "}});").unwrap();
    writeln!(w, "/** The lock options' defaults (the component's `default-options`). */\nexport const LOCK_DEFAULTS = frozen({});", object(&lock_defaults())).unwrap();
    writeln!(w, "/** The host policy's defaults (the Rust host's `Policy::default()`). */\nexport const POLICY_DEFAULTS = frozen({});", object(&policy_defaults())).unwrap();
    js
}

fn render_dts() -> String {
    let mut ts = String::from(HEADER);
    let w = &mut ts;
    let literal = |fields: &[(&str, String)]| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("readonly {k}: {v}"))
            .collect();
        format!("{{ {} }}", body.join("; "))
    };
    writeln!(w, "\nexport declare const WIT_VERSION: '{WIT_VERSION}';").unwrap();
    writeln!(w, "export declare const WIT_PACKAGE: '{WIT_PACKAGE}';").unwrap();
    for (_, name, value) in constants() {
        writeln!(w, "export declare const {name}: {value};").unwrap();
    }
    writeln!(
        w,
        "/** A bundled script's name. */\nexport type ScriptName = {};",
        Script::ALL
            .iter()
            .map(|s| format!("'{}'", s.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    )
    .unwrap();
    writeln!(
        w,
        "/** A companion key's name. */\nexport type CompanionName = {};",
        Companion::ALL
            .iter()
            .map(|c| format!("'{}'", c.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    )
    .unwrap();
    writeln!(w, "export type KeyRole = 'lock' | 'any' | CompanionName;").unwrap();
    writeln!(
        w,
        "export type ArgRole = {};",
        ArgRole::ALL
            .iter()
            .map(|a| format!("'{}'", a.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    )
    .unwrap();
    writeln!(
        w,
        "export declare const COMPANION_SUFFIXES: {{ readonly [name in CompanionName]: string }};"
    )
    .unwrap();
    writeln!(w, "export declare const COMPANION_DESCRIPTIONS: {{ readonly [name in CompanionName]: string }};").unwrap();
    writeln!(w, "export declare const SCRIPTS: {{\n  readonly [name in ScriptName]: ReadonlyArray<{{ readonly keys: readonly KeyRole[]; readonly args: readonly ArgRole[] }}>;\n}};").unwrap();
    writeln!(
        w,
        "export declare const LOCK_DEFAULTS: {};",
        literal(&lock_defaults())
    )
    .unwrap();
    writeln!(
        w,
        "export declare const POLICY_DEFAULTS: {};",
        literal(&policy_defaults())
    )
    .unwrap();

    let companions = Companion::ALL
        .iter()
        .map(|c| format!("`{{KEY}}{}`", c.suffix()))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(w, "\n/** The policy options the Rust host's `Policy` has too, with the same defaults. */\nexport interface ContractPolicyOptions {{").unwrap();
    for (doc, field, ty) in [
        (
            format!(
                "Each Redis call (EVALSHA, and EVAL after NOSCRIPT) must answer within this. Default {}.",
                policy::DEFAULT_COMMAND_TIMEOUT_MS
            ),
            "commandTimeoutMs",
            "number",
        ),
        (
            format!(
                "Most keys in one call. Default {}.",
                policy::DEFAULT_MAX_KEYS
            ),
            "maxKeys",
            "number",
        ),
        (
            format!(
                "Longest key in UTF-8 bytes. Default {}.",
                policy::DEFAULT_MAX_KEY_BYTES
            ),
            "maxKeyBytes",
            "number",
        ),
        (
            format!(
                "Every key must start with this, or be a companion of a key that does: {companions}\n   * for a key without a hash tag (a key with one has companions `KEY::fence`, ... that start\n   * with it). Default '{}' (any key). Use the same value as `keyPrefix`.",
                policy::DEFAULT_KEY_NAMESPACE
            ),
            "keyNamespace",
            "string",
        ),
        (
            format!(
                "Most bytes of keys and arguments in one call. Default {}.",
                policy::DEFAULT_MAX_REQUEST_BYTES
            ),
            "maxRequestBytes",
            "number",
        ),
        (
            format!(
                "Most bytes a reply may carry (bulk bytes, 8 per array element). Default {}.",
                policy::DEFAULT_MAX_REPLY_BYTES
            ),
            "maxReplyBytes",
            "number",
        ),
        (
            format!(
                "Redis calls per call into the component: a token bucket that starts full with this many\n   * at every call and refills at this many per second. Default {}.",
                policy::DEFAULT_MAX_EVALS_PER_SECOND
            ),
            "maxEvalsPerSecond",
            "number",
        ),
        (
            format!(
                "Bytes of keys and arguments one DistributedLock may send: a token bucket of this many,\n   * refilled at this many per second over the client's life. Default {}.",
                bytes(policy::DEFAULT_MAX_BYTES_PER_SECOND)
            ),
            "maxBytesPerSecond",
            "number",
        ),
        (
            format!(
                "Let `release` and `extend` name tokens of other clients of the convention (node-redlock,\n   * redis-py, redsync: 1 to {} bytes without control characters), for `attach`. Default {}:\n   * only dlock's own tokens (UUID v4).",
                policy::MAX_FOREIGN_TOKEN_BYTES,
                policy::DEFAULT_ALLOW_FOREIGN_TOKENS
            ),
            "allowForeignTokens",
            "boolean",
        ),
        (
            format!(
                "Worker backend: longest a call may compute without calling Redis or sleeping before its\n   * worker is stopped (a trap). Default {}. The JSPI backend cannot enforce it.",
                policy::DEFAULT_MAX_COMPUTE_MS
            ),
            "maxComputeMs",
            "number",
        ),
        (
            format!(
                "Largest linear memory of an instance, checked after each call (an instance past it is\n   * discarded as if it had trapped). Default {}.",
                bytes(policy::MAX_MEMORY_BYTES as u64)
            ),
            "maxMemoryBytes",
            "number",
        ),
    ] {
        writeln!(w, "  /** {doc} */\n  {field}?: {ty};").unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w, "\n/** The lock options of the component's `lock-options`, with its defaults. */\nexport interface ContractLockOptions {{").unwrap();
    for (doc, field, ty) in [
        (
            format!(
                "Retries after the first attempt of `acquire`. Default {}.",
                contract::DEFAULT_RETRY_COUNT
            ),
            "retryCount",
            "number",
        ),
        (
            format!(
                "Base delay: attempt n (n >= 2) waits retryDelayMs * 2^(n-2). Default {}.",
                contract::DEFAULT_RETRY_DELAY_MS
            ),
            "retryDelayMs",
            "number",
        ),
        (
            format!(
                "Cap on any one delay of `acquire`. Default {}.",
                contract::DEFAULT_MAX_RETRY_DELAY_MS
            ),
            "maxRetryDelayMs",
            "number",
        ),
        (
            format!(
                "Full jitter: each delay drawn from [0, delay]. Default {}.",
                contract::DEFAULT_JITTER
            ),
            "jitter",
            "boolean",
        ),
        (
            format!(
                "Give every acquisition a fencing token (strictly increasing per key). Default {}.",
                contract::DEFAULT_FENCING
            ),
            "fencing",
            "boolean",
        ),
        (
            format!(
                "`extend` refuses (and the handle is lost) when validity has this little left. Default {}.",
                contract::DEFAULT_SAFETY_MARGIN_MS
            ),
            "safetyMarginMs",
            "number | bigint",
        ),
    ] {
        writeln!(w, "  /** {doc} */\n  {field}?: {ty};").unwrap();
    }
    writeln!(w, "}}").unwrap();
    ts
}

/// With `DLOCK_BLESS=1` writes `text` to `path`; otherwise asserts that `path` holds it.
fn check_or_bless(path: &Path, text: &str) {
    if std::env::var_os("DLOCK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is stale (not what the dlock-contract crate generates): run scripts/bundle",
        path.display()
    );
}

#[test]
fn the_node_packages_generated_contract_is_the_contract_crates() {
    check_or_bless(&generated().join("contract.js"), &render_js());
    check_or_bless(&generated().join("contract.d.ts"), &render_dts());
}

#[test]
fn the_generated_contract_states_every_script_and_companion() {
    let js = render_js();
    for script in Script::ALL {
        assert!(
            js.contains(&format!("  {}: [\n", script.name())),
            "{script:?}"
        );
    }
    for companion in Companion::ALL {
        assert!(
            js.contains(&format!("{}: '{}'", companion.name(), companion.suffix())),
            "{companion:?}"
        );
    }
    assert!(js.contains(&format!(
        "maxRequestBytes: {}",
        policy::DEFAULT_MAX_REQUEST_BYTES
    )));
}
