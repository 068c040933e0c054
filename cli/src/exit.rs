//! The exit codes, in one table. `dlock --help`, each command's `--help`, docs/SHELL.md's
//! table and docs/cli.md are rendered from [`TABLE`]; tests fail when those files say
//! anything else (`DLOCK_BLESS=1 cargo test -p dlock --bin dlock docs` rewrites them).

/// Success.
pub const EXIT_OK: u8 = 0;
/// The lock is held by someone else, or the token does not own it.
pub const EXIT_BUSY: u8 = 1;
/// Bad input: usage, an empty key, a bad duration. Nothing was written to Redis.
pub const EXIT_USAGE: u8 = 2;
/// Redis is unreachable or failing (or refused the call).
pub const EXIT_REDIS: u8 = 3;
/// dlock itself failed (the lock component trapped, a process could not be started), or its
/// output could not be written (a closed stdout; `acquire` then releases the lock it took).
pub const EXIT_INTERNAL: u8 = 4;
/// `release`, `extend`: the lock had expired (the key was gone); nothing was changed.
pub const EXIT_EXPIRED: u8 = 5;
/// `release` in quorum mode: fewer than a majority of the primaries confirmed the token gone;
/// a majority may still hold it until its TTL. Running the release again is safe.
pub const EXIT_RELEASE_INCOMPLETE: u8 = 6;
/// `run`: the lock was busy and CMD never started (changeable with --conflict-exit-code).
pub const EXIT_RUN_CONFLICT: u8 = 75;
/// `run`: the lock was lost (or could not be kept, or `--max-hold` was reached) while CMD ran;
/// CMD was terminated (changeable with --lost-exit-code).
pub const EXIT_RUN_LOST: u8 = 76;

/// What an exit status is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// One of dlock's own codes.
    Code(u8),
    /// `run`: the status CMD exited with.
    OfCmd,
    /// `run`: CMD could not be executed (126) or was not found (127), as a shell says.
    CmdNotRun,
}

/// One exit status: what it means for every command, and in the words of each command that
/// can end with it.
#[derive(Debug)]
pub struct Exit {
    /// The status.
    pub status: Status,
    /// What it means, for the summary tables (`dlock --help`, docs/SHELL.md). `backquoted`
    /// words are code: rendered as such in Markdown, plain on a terminal.
    pub meaning: &'static str,
    /// The commands that can end with it, each with what it means there (its `--help`).
    pub commands: &'static [(&'static str, &'static str)],
}

const REDIS_FAILING: &str = "Redis unreachable or failing";
const BAD_INPUT: &str = "bad input";

/// Every exit status of `dlock`, in the order the help lists them.
pub const TABLE: &[Exit] = &[
    Exit {
        status: Status::Code(EXIT_OK),
        meaning: "success",
        commands: &[
            ("acquire", "acquired (token on stdout)"),
            ("release", "released"),
            ("extend", "extended"),
            ("status", "locked or not"),
            ("doctor", "no setting weakens the guarantees"),
            ("demo", "all checks passed"),
            ("compose", "written"),
        ],
    },
    Exit {
        status: Status::Code(EXIT_BUSY),
        meaning: "the lock is held by someone else / TOKEN does not own it (taken over); a key \
                  holding another type than a string is \"KEY holds a non-lock value\"",
        commands: &[
            ("acquire", "held by someone else (after --wait)"),
            (
                "release",
                "taken over (another owner's token; nothing changed)",
            ),
            (
                "extend",
                "taken over (another owner's token; nothing changed)",
            ),
            (
                "doctor",
                "some setting weakens the guarantees (or could not be read)",
            ),
            ("demo", "a check failed"),
        ],
    },
    Exit {
        status: Status::Code(EXIT_USAGE),
        meaning: "bad input (usage, empty key, bad duration); nothing was written to Redis",
        commands: &[
            ("acquire", BAD_INPUT),
            ("release", BAD_INPUT),
            ("extend", BAD_INPUT),
            ("status", BAD_INPUT),
            ("run", BAD_INPUT),
            ("demo", BAD_INPUT),
            (
                "compose",
                "bad input (not a component, no dlock:lock/lock import, unreadable PLUGIN or \
                 unwritable OUT)",
            ),
        ],
    },
    Exit {
        status: Status::Code(EXIT_REDIS),
        meaning: "Redis unreachable or failing (the message names the URL, without password, \
                  and says whether a retry can help; a release whose outcome is unknown is safe \
                  to retry); in quorum mode, fewer than a majority of the primaries answered \
                  (`no quorum: 1 of 3 Redis primaries answered, 2 needed (...)`)",
        commands: &[
            ("acquire", REDIS_FAILING),
            ("release", "Redis unreachable or failing (safe to retry)"),
            ("extend", REDIS_FAILING),
            (
                "status",
                "Redis unreachable or failing (in quorum mode: fewer than a majority answering)",
            ),
            ("run", REDIS_FAILING),
            ("doctor", "Redis unreachable"),
            ("demo", "Redis unreachable or redis-server missing"),
        ],
    },
    Exit {
        status: Status::Code(EXIT_INTERNAL),
        meaning: "internal failure (the lock component trapped, a process could not start), or \
                  stdout was closed before the result could be written (`acquire` then releases \
                  the lock it took: nobody could use its token)",
        commands: &[(
            "acquire",
            "the token could not be written (stdout closed; the lock was released)",
        )],
    },
    Exit {
        status: Status::Code(EXIT_EXPIRED),
        meaning: "`release`, `extend`: the lock had expired (the key was gone); nothing was \
                  changed. A key taken over by another token is exit 1",
        commands: &[
            ("release", "expired (the key was gone; nothing changed)"),
            ("extend", "expired (the key was gone; nothing changed)"),
        ],
    },
    Exit {
        status: Status::Code(EXIT_RELEASE_INCOMPLETE),
        meaning: "`release` in quorum mode: fewer than a majority of the primaries confirmed the \
                  token gone (the others refused or did not answer), so a majority may still \
                  hold it until its TTL; running the same release again is safe",
        commands: &[(
            "release",
            "quorum mode: fewer than a majority of the primaries confirmed the release (safe to \
             retry)",
        )],
    },
    Exit {
        status: Status::OfCmd,
        meaning: "`run`: the status CMD exited with; 128+N when signal N ended CMD (or ended `run` while \
                  it was still taking the lock; CMD did not run)",
        commands: &[("run", "CMD's status (128+N for signal N)")],
    },
    Exit {
        status: Status::Code(EXIT_RUN_CONFLICT),
        meaning: "`run`: the lock was busy; CMD did not run (`--conflict-exit-code`)",
        commands: &[("run", "busy (CMD not run; --conflict-exit-code)")],
    },
    Exit {
        status: Status::Code(EXIT_RUN_LOST),
        meaning: "`run`: the lock was lost (or could not be kept, or `--max-hold` was reached) \
                  while CMD ran; CMD was terminated (`--lost-exit-code`)",
        commands: &[(
            "run",
            "lock lost or not kept (or --max-hold reached) while CMD ran, CMD terminated \
             (--lost-exit-code)",
        )],
    },
    Exit {
        status: Status::CmdNotRun,
        meaning: "`run`: CMD could not be executed (126) or was not found (127)",
        commands: &[("run", "CMD not executable / not found")],
    },
];

/// Width of the rendered summary, as of `dlock --help` (clap's `max_term_width`).
pub const HELP_WIDTH: usize = 100;

impl Status {
    fn label(self) -> String {
        match self {
            Status::Code(code) => code.to_string(),
            Status::OfCmd => "CMD's status".to_owned(),
            Status::CmdNotRun => "126/127".to_owned(),
        }
    }
}

/// `dlock --help`'s summary of every exit status.
pub fn summary() -> String {
    let mut out = String::from("Exit codes:");
    for exit in TABLE {
        let label = exit.status.label();
        let label = if label.len() <= 3 {
            format!("  {label:<4}")
        } else {
            format!("  {label}\n      ")
        };
        out.push('\n');
        out.push_str(&wrap(&label, &exit.meaning.replace('`', ""), 6));
    }
    out
}

/// The exit statuses of one command, in one line for its `--help`.
pub fn of(command: &str) -> String {
    let codes: Vec<String> = TABLE
        .iter()
        .filter_map(|exit| {
            let (_, meaning) = exit.commands.iter().find(|(name, _)| *name == command)?;
            Some(match exit.status {
                Status::OfCmd => meaning.to_string(),
                status => format!("{} {meaning}", status.label()),
            })
        })
        .collect();
    format!("Exit codes: {}.", codes.join(", "))
}

/// docs/SHELL.md's table of exit statuses, in Markdown.
#[cfg(test)]
pub fn markdown() -> String {
    let mut out = String::from("| exit | meaning |\n| --- | --- |\n");
    for exit in TABLE {
        let run_only = exit.commands.iter().all(|(name, _)| *name == "run");
        let label = exit.status.label();
        let label = if run_only {
            format!("`run`: {label}")
        } else {
            label
        };
        let meaning = match exit.meaning.strip_prefix("`run`: ") {
            Some(rest) if run_only => rest,
            _ => exit.meaning,
        };
        out.push_str(&format!("| {label} | {meaning} |\n"));
    }
    out
}

/// `first` followed by `text`, wrapped at [`HELP_WIDTH`] with later lines indented by `indent`.
fn wrap(first: &str, text: &str, indent: usize) -> String {
    let mut out = first.to_owned();
    let mut line_len = first.len() - first.rfind('\n').map_or(0, |newline| newline + 1);
    let mut line_start = true;
    for word in text.split(' ') {
        if !line_start && line_len + 1 + word.len() > HELP_WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            line_len = indent;
        } else if !line_start {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
        line_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_listed_once_and_every_command_named_is_a_command() {
        use clap::CommandFactory;
        let cli = super::super::Cli::command();
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        for (i, exit) in TABLE.iter().enumerate() {
            assert!(
                TABLE[..i].iter().all(|other| other.status != exit.status),
                "{:?} is listed twice",
                exit.status
            );
            for (command, _) in exit.commands {
                assert!(names.contains(command), "{command} is not a dlock command");
            }
        }
    }

    #[test]
    fn a_commands_line_lists_its_statuses_in_the_tables_order() {
        assert_eq!(
            of("extend"),
            "Exit codes: 0 extended, 1 taken over (another owner's token; nothing changed), \
             2 bad input, 3 Redis unreachable or failing, 5 expired (the key was gone; nothing \
             changed)."
        );
        assert!(of("run").starts_with("Exit codes: 2 bad input, 3 Redis"));
        assert!(of("run").contains(", CMD's status (128+N for signal N), 75 busy"));
    }

    #[test]
    fn the_summary_fits_the_help_width_and_names_every_status() {
        let summary = summary();
        for line in summary.lines() {
            assert!(line.len() <= HELP_WIDTH, "too wide: {line:?}");
        }
        for exit in TABLE {
            assert!(
                summary.contains(&format!("\n  {}", exit.status.label())),
                "{:?} missing from\n{summary}",
                exit.status
            );
        }
        assert!(!summary.contains('`'));
    }

    #[test]
    fn wrapping_breaks_between_words_and_indents_what_follows() {
        let long = "word ".repeat(40);
        let wrapped = wrap("  7   ", long.trim_end(), 6);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines[0].starts_with("  7   word"));
        assert!(lines[1..].iter().all(|l| l.starts_with("      word")));
        assert!(lines.iter().all(|l| l.len() <= HELP_WIDTH));
        assert_eq!(wrapped.split_whitespace().count(), 41);
    }
}
