//! The `slipway` command-line client: Heroku's CLI commands (`apps:create`, `config:set`,
//! `ps:scale`, `logs --tail`, `releases`, `rollback`...) against a Slipway server's Platform API v3.
//!
//! Layout: `args` is the clap grammar; [`Env`] gathers what the CLI reads from its
//! surroundings (API URL and key discovery from `SLIPWAY_*` variables, `~/.netrc` and the server's
//! data directory); `api` is the HTTP client; `commands` holds one module per topic and writes
//! Heroku-style output through `format`; `git` runs the `git` commands that set remotes and the
//! push credential helper; `netrc` edits `~/.netrc`. Arguments enter through [`run`] (real
//! process) or [`run_with`] (tests pass an [`Env`] and writers); output leaves through the given
//! writers, and every failure becomes one ` ▸    message` line on the error writer and exit code 1.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod api;
mod args;
mod commands;
mod env;
mod format;
mod git;
mod netrc;
mod term;

pub use env::{Env, Input};

/// Runs one CLI command; returns the process exit code. `args` includes argv[0].
pub fn run(args: Vec<OsString>) -> ExitCode {
    let env = Env::from_process();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(" ▸    Cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let code = runtime.block_on(run_with(args, &env, &mut out, &mut err));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs one CLI command against `env`, writing normal output to `out` and errors to `err`;
/// returns the exit code (0 on success, 1 on any error).
pub async fn run_with(
    args: Vec<OsString>,
    env: &Env,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, out, err),
    };
    let result = {
        let mut ctx = commands::Ctx::new(env, out, err);
        commands::dispatch(&mut ctx, cli.command).await
    };
    let result = result.and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => 0,
        Err(e) => report(&e, out, err),
    }
}

/// Prints help and version to `out` (exit 0) and usage errors as one line (exit 1).
fn clap_error(e: clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            0
        }
        _ => {
            let _ = writeln!(err, " ▸    {}", one_line_usage_error(&text));
            let _ = err.flush();
            1
        }
    }
}

/// Folds clap's multi-line error (message, tips, usage) into one sentence-like line that ends by
/// pointing at the command's help.
fn one_line_usage_error(text: &str) -> String {
    let mut message = String::new();
    let mut command = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(usage) = line.strip_prefix("Usage:") {
            // `Usage: slipway config:set <KEY=VALUE>...` names the subcommand.
            command = usage
                .split_whitespace()
                .nth(1)
                .filter(|w| !w.starts_with(['<', '[', '-']))
                .map(str::to_owned);
            break;
        }
        if line.starts_with("For more information") {
            break;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        let line = line.strip_prefix("tip: ").unwrap_or(line);
        let mut chars = line.chars();
        let line = match chars.next() {
            Some(c) if !message.ends_with(':') => c.to_uppercase().chain(chars).collect(),
            _ => line.to_owned(),
        };
        if !message.is_empty() {
            if !message.ends_with([':', '.', '?', '!']) {
                message.push('.');
            }
            message.push(' ');
        }
        message.push_str(&line);
    }
    if message.is_empty() {
        message.push_str("Invalid arguments");
    }
    if !message.ends_with(['.', '?', '!']) {
        message.push('.');
    }
    match command {
        Some(cmd) => format!("{message} See slipway help {cmd}."),
        None => format!("{message} See slipway help."),
    }
}

/// Prints an error as Heroku does, on one line. A closed stdout (`slipway logs | head`) is not an
/// error worth reporting.
fn report(e: &anyhow::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if let Some(commands::ExitStatus(code)) = e.downcast_ref::<commands::ExitStatus>() {
        let _ = out.flush();
        return *code;
    }
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return 0;
    }
    let _ = out.flush();
    let message = format!("{e:#}");
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(err, " ▸    {message}");
    let _ = err.flush();
    1
}
