//! The generated parts of the docs: docs/SHELL.md's exit-code table and docs/cli.md (every
//! command's `--help`) are rendered from the code, and these tests fail when the files differ.
//! `DLOCK_BLESS=1 cargo test -p dlock --bin dlock docs` rewrites them.

use std::path::Path;

use clap::CommandFactory;
use dlock_tests::repository::root as repo;

use super::{Cli, exit};

const EXIT_CODES_START: &str =
    "<!-- exit codes: rendered from cli/src/exit.rs; a test compares -->\n";
const EXIT_CODES_END: &str = "<!-- /exit codes -->\n";

/// Compares `path` with `want`, or writes `want` to it under `DLOCK_BLESS=1`.
fn check(path: &Path, want: &str) {
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have == want {
        return;
    }
    if std::env::var_os("DLOCK_BLESS").is_some() {
        std::fs::write(path, want).expect("writing the rendered docs");
        return;
    }
    panic!(
        "{} is not what the code renders; run `DLOCK_BLESS=1 cargo test -p dlock --bin dlock \
         docs` and commit the result",
        path.display()
    );
}

/// docs/SHELL.md with its exit-code table between the markers replaced by [`exit::markdown`].
fn readme_with_exit_codes(readme: &str) -> String {
    let start = readme
        .find(EXIT_CODES_START)
        .expect("docs/SHELL.md has the exit codes' start marker")
        + EXIT_CODES_START.len();
    let end = readme[start..]
        .find(EXIT_CODES_END)
        .expect("docs/SHELL.md has the exit codes' end marker")
        + start;
    format!("{}{}{}", &readme[..start], exit::markdown(), &readme[end..])
}

/// docs/cli.md: each command's long help, as a terminal 100 columns wide shows it, with the
/// values of environment variables left out (they are the reader's, not the docs').
fn cli_reference() -> String {
    let mut cli = Cli::command()
        .term_width(exit::HELP_WIDTH)
        .mut_args(|arg| arg.hide_env_values(true));
    cli.build();
    let mut out = String::from(
        "# The `dlock` command\n\n\
         Generated from the code (`cli/src/main.rs` and each command's module): every command's \
         `--help`. A test fails when this file is stale; `DLOCK_BLESS=1 cargo test -p dlock \
         --bin dlock docs` rewrites it.\n",
    );
    let mut section = |title: &str, command: &mut clap::Command| {
        let help = command.render_long_help().to_string();
        let lines: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
        out.push_str(&format!(
            "\n## `{title}`\n\n```text\n{}\n```\n",
            lines.join("\n")
        ));
    };
    section("dlock", &mut cli.clone());
    let names: Vec<String> = cli
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        let mut sub = cli
            .find_subcommand(&name)
            .expect("listed above")
            .clone()
            .mut_args(|arg| arg.hide_env_values(true));
        section(&format!("dlock {name}"), &mut sub);
    }
    out
}

#[test]
fn the_shell_guides_exit_codes_are_the_table() {
    let path = repo().join("docs/SHELL.md");
    let readme = std::fs::read_to_string(&path).expect("reading docs/SHELL.md");
    check(&path, &readme_with_exit_codes(&readme));
}

#[test]
fn docs_cli_md_is_every_commands_help() {
    check(&repo().join("docs/cli.md"), &cli_reference());
}

#[test]
fn the_help_of_each_command_ends_with_its_exit_codes() {
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|sub| sub.get_name() != "help") {
        let after = sub
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert_eq!(after, exit::of(sub.get_name()), "dlock {}", sub.get_name());
    }
}
