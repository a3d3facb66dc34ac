//! `pgvault`: the command line, a thin clap front end over `pgvault-host`.
//!
//! Commands and flags follow `az dataprotection` (`backup-vault create --vault-name`,
//! `backup-instance adhoc-backup --rule-name`, ...), so an Azure user already knows them.
//! Each command parses its arguments into domain types, calls the service, and prints
//! Azure's JSON (or a table with `--output table`). Errors print as `CODE: message` on
//! stderr with a non-zero exit status; a closed stdout (`| head`) ends quietly.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Format;

#[derive(Parser, Debug)]
#[command(name = "pgvault", version, about = "A self-hosted backup vault for PostgreSQL, on the model of Azure Backup", long_about = None)]
#[command(
    after_help = "Start with `pgvault demo`, or see README.md for the walkthrough.\nPGVAULT_HOME (default ~/.local/share/pgvault) holds the vault registry and the job history."
)]
struct Cli {
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "json")]
    output: Format,
    /// Log level (error, warn, info, debug, trace, off), or per module
    /// (`warn,pgvault_host=debug`); also RUST_LOG. `serve` logs at info.
    #[arg(long, global = true, value_parser = parse_log_level)]
    log_level: Option<String>,
    /// Log lines for people (text) or for a log collector (json: one object per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Use only this Azure credential for Key Vault secrets (environment, workload-identity,
    /// managed-identity, azure-cli) instead of trying them in Azure's order.
    #[arg(long, global = true, env = "PGVAULT_AZURE_CREDENTIAL")]
    azure_credential: Option<pgvault_host::api::CredentialKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and show backup vaults.
    #[command(subcommand)]
    BackupVault(commands::vault::VaultCommand),
    /// Policy templates and policies.
    #[command(subcommand)]
    BackupPolicy(commands::policy::PolicyCommand),
    /// Protect databases, back them up on demand, restore them.
    #[command(subcommand)]
    BackupInstance(commands::instance::InstanceCommand),
    /// The recovery points of a backup instance.
    #[command(subcommand)]
    RecoveryPoint(commands::recovery_point::RecoveryPointCommand),
    /// Apply the policies' retention: archive moves, expiries, garbage collection.
    #[command(subcommand)]
    Retention(commands::retention::RetentionCommand),
    /// The job history: every backup, restore and configuration, as a job.
    #[command(subcommand)]
    Job(commands::job::JobCommand),
    /// Run a Rhai script (a runbook) against pgvault's API.
    #[command(
        after_help = "Examples:\n  pgvault run scripts/walkthrough.rhai\n  pgvault run --sandbox --script-restore-dir /srv/restores --script-env 'PGVAULT_NIGHTLY_*' nightly.rhai   # as a drop-in would run"
    )]
    Run(commands::run::RunArgs),
    /// Explore vaults interactively: `run`'s script API with line editing, history, Tab
    /// completion and help().
    #[command(
        after_help = "Example:\n  pgvault repl\n  pgvault> help(\"adhoc_backup\")\n  pgvault> jobs(#{ status: \"Failed\" })\nHistory is kept in $PGVAULT_HOME/repl_history. Ctrl-C cancels the running entry, Ctrl-D exits."
    )]
    Repl(commands::repl::ReplArgs),
    /// Run the host: scheduled backups at their times, the retention sweep daily, until
    /// SIGTERM or Ctrl-C (see examples/systemd/pgvault.service).
    #[command(
        after_help = "Examples:\n  pgvault serve\n  pgvault serve --max-concurrent-jobs 2 --log-format json\n  pgvault serve --script-restore-dir /srv/restores --script-restore-server db2.example:5432 --script-env PGVAULT_NIGHTLY_RULE\n\nDrop-in scripts may do only what the --script-* and --allow-destructive-scripts flags allow.\nOn SIGTERM or Ctrl-C the host takes no new work, lets running jobs finish for\n--shutdown-grace seconds, then cancels them (Cancelled jobs, no partial recovery point)."
    )]
    Serve(commands::serve::ServeArgs),
    /// One pass of the host: run every scheduled backup that is due and sweep retention, then
    /// exit (for cron or a systemd timer).
    #[command(
        after_help = "Examples:\n  pgvault tick\n  pgvault tick --at 2025-01-05T22:00:00Z   # as if the clock said so (tests, catch-up drills)"
    )]
    Tick(commands::tick::TickArgs),
    /// The bearer tokens of the REST API (`pgvault serve --listen`).
    #[command(subcommand)]
    ApiToken(commands::api_token::ApiTokenCommand),
    /// Alerts (failed backups, restores and drills, overdue backups, damage, deletions) and
    /// where they go: webhooks, email, Rhai hooks.
    #[command(
        subcommand,
        after_help = "Examples:\n  pgvault alert list --open\n  pgvault alert destination add --name oncall --webhook-url env:PGVAULT_TEAMS_WEBHOOK\n  pgvault alert destination test --name oncall"
    )]
    Alert(commands::alert::AlertCommand),
    /// Show pgvault end to end on a throwaway PostgreSQL: sample data, a vault, backups, a restore, the jobs.
    #[command(after_help = "Example:\n  cargo run --release -- demo")]
    Demo(commands::demo::DemoArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    // Private by default: what pgvault writes is the database itself (packs), the key to its
    // chunk ids (vault.json), the job history and restored dumps. A 077 umask, set before any
    // thread starts, makes every folder 0700 and file 0600 whoever creates it (object_store,
    // SQLite, pg_restore), whatever the shell's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    // The host is a service: its log is how an operator sees it work. Commands log warnings.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }

    // Only recorded here: nothing Azure is read or contacted until a Key Vault secret is.
    pgvault_host::api::configure_azure_credential(cli.azure_credential);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::dispatch(cli.command, cli.output)) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `--log-level`: a level, or comma-separated `target=level` directives. `EnvFilter` takes
/// any word as a target name, so `--log-level bogus` would silently log nothing; each level
/// is checked here and a wrong one is a usage error.
fn parse_log_level(text: &str) -> Result<String, String> {
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err("give a log level: error, warn, info, debug, trace or off".to_owned());
    }
    for directive in directives {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        level
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .map_err(|_| {
                format!("`{level}` is not a log level; give error, warn, info, debug, trace or off")
            })?;
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_checked() {
        for good in ["warn", "DEBUG", "off", "warn,pgvault_host=debug", "info,"] {
            assert_eq!(parse_log_level(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["bogus", "", "warn,pgvault_host=loud", " , "] {
            assert!(parse_log_level(bad).is_err(), "{bad}");
        }
    }
}
