//! One module per command group; [`dispatch`] routes a parsed command to it.

pub mod alert;
pub mod api_token;
pub mod demo;
pub mod instance;
pub mod job;
pub mod policy;
pub mod recovery_point;
pub mod repl;
pub mod retention;
pub mod run;
pub mod scope;
pub mod serve;
pub mod simulate;
pub mod tick;
pub mod vault;
pub mod vault_key;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::de::DeserializeOwned;

use pgvault_host::api::Home;
use pgvault_host::api::limits;
use pgvault_host::service::Pgvault;
use pgvault_model::code::ErrorCode;

use crate::Command;
use crate::output::Format;

/// A pgvault error (`CODE: message`) as an `anyhow` error.
pub fn coded(e: pgvault_host::api::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.code, e.message)
}

/// After a listing printed what it could read: fails naming every file it could not, so a
/// damaged resource is neither hidden nor allowed to hide the others.
pub fn fail_on_unreadable(
    what: &str,
    unreadable: Vec<pgvault_host::api::Error>,
) -> anyhow::Result<()> {
    if unreadable.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = unreadable
        .iter()
        .map(|e| format!("  {}", e.message))
        .collect();
    Err(anyhow::anyhow!(
        "{code}: the {what} above could be read, but {} could not (restore the file from a copy, or delete it and create the resource again):\n{}",
        unreadable.len(),
        lines.join("\n"),
        code = ErrorCode::VaultCorrupt
    ))
}

pub fn open_service() -> anyhow::Result<Pgvault> {
    let home = Home::from_env().map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    Pgvault::open(home).map_err(coded)
}

/// [`open_service`] serving `subscription` (`serve --subscription-id`) rather than the
/// environment's.
pub fn open_service_in(
    subscription: pgvault_model::resource::SubscriptionId,
) -> anyhow::Result<Pgvault> {
    let home = Home::from_env().map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    Pgvault::open(home.with_subscription_id(subscription)).map_err(coded)
}

/// Reads a JSON file (`-` for stdin) of at most `limit` bytes, naming the file in any error.
/// A leading byte order mark is dropped (see `pgvault_host::api::limits`).
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str, limit: u64) -> anyhow::Result<T> {
    let text = limits::read_arg_text(path, what, limit)
        .map_err(|e| anyhow::anyhow!("{code}: {e}", code = ErrorCode::UserErrorInvalidInput))?;
    let label = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        format!("`{}`", path.display())
    };
    serde_json::from_str(&text).with_context(|| format!("{label} is not a valid {what}"))
}

pub async fn dispatch(command: Command, format: Format) -> anyhow::Result<ExitCode> {
    // What restores and drills of killed pgvault processes left behind goes first.
    if let Ok(home) = Home::from_env() {
        pgvault_host::service::clean_leftovers(&home).await;
    }
    // Notices of what the command raised (a failed backup, a deletion) go out when it ends;
    // `serve` sends its own, and the REPL's and the demo's go out at the next command.
    let notify = !matches!(
        command,
        Command::Serve(_) | Command::Repl(_) | Command::Demo(_) | Command::Alert(_)
    );
    let result = match command {
        Command::BackupVault(c) => vault::run(c, format).await,
        Command::BackupPolicy(c) => policy::run(c, format).await,
        Command::BackupInstance(c) => instance::run(c, format).await,
        Command::RecoveryPoint(c) => recovery_point::run(c, format).await,
        Command::Job(c) => job::run(c, format).await,
        Command::Run(a) => run::run(a).await,
        Command::Repl(a) => repl::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Tick(a) => tick::run(a, format).await,
        Command::Retention(c) => retention::run(c, format).await,
        Command::Serve(a) => serve::run(a).await,
        Command::ApiToken(c) => api_token::run(c, format).await,
        Command::Alert(c) => alert::run(c, format).await,
    };
    if notify {
        alert::deliver_after_command().await;
    }
    result
}
