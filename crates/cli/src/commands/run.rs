//! `pgvault run FILE`: a Rhai runbook against pgvault's API, recorded as a `ScriptRun` job.
//!
//! The script runs through the same code as the host's drop-in scripts
//! (`pgvault_host::dropin::run_script_file`) with the operator's defaults: destructive calls
//! allowed, no limits unless `--wall-time` is given, the file left where it is, and what the
//! script prints written to stdout as it prints it (and kept with the job). Ctrl-C stops the
//! script and the operation it waits for, and records the job as `Cancelled`; a second
//! Ctrl-C ends the process at once. `--sandbox` runs it as a drop-in would run
//! ([`ScriptGrantArgs`], shared with `serve` and `tick`, says what it may do).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;

use pgvault_host::dropin::{ReadyScript, RunOptions, run_script_file};
use pgvault_host::history::current_owner;
use pgvault_host::script::Interrupt;
use pgvault_host::script::sandbox::{Grants, RestoreDir, ServerGrant};
use pgvault_host::service::Pgvault;
use pgvault_model::duration::IsoDuration;
use pgvault_model::job::{JobFilter, JobOutcome, JobStatus};

use super::{coded, open_service};

/// The exit code of a run stopped by Ctrl-C, as a shell reports a process SIGINT ended.
const CANCELLED_EXIT: u8 = 130;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The script to run.
    pub file: PathBuf,
    /// Run the script as a drop-in runs: within the drop-in limits, without `import` or
    /// `eval`, and allowed only what the flags below (and the script's header) allow. The
    /// file stays where it is and its output is printed.
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub grants: ScriptGrantArgs,
    /// Stop the script, and the operation it waits for, after this long: an ISO 8601
    /// duration such as PT30M or PT2H. Without it the script runs until it ends (with
    /// --sandbox, for at most an hour).
    #[arg(long, value_name = "DURATION", value_parser = parse_wall_time)]
    pub wall_time: Option<Duration>,
}

fn parse_wall_time(text: &str) -> Result<Duration, String> {
    let duration: IsoDuration = text.parse().map_err(|e| format!("{e}"))?;
    // Calendar units (P1M) are as long as they are from now.
    let start = Utc::now();
    duration
        .checked_add_to(start)
        .and_then(|end| (end - start).to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive duration; give one such as PT30M"))
}

/// What sandboxed scripts may do: drop-ins (`serve`, `tick`) and `pgvault run --sandbox`.
/// Everything not granted here is refused; a script's header may narrow it further
/// (`// restore-dir: ...`, `// restore-server: ...`, `// env: ...`, `// destructive: no`).
#[derive(Args, Debug, Clone, Default)]
pub struct ScriptGrantArgs {
    /// Let drop-in scripts make destructive calls: delete recovery points and backup
    /// instances, sweep retention at a time other than now, suspend or stop protection
    /// (refused otherwise).
    #[arg(long)]
    pub allow_destructive_scripts: bool,
    /// A folder (absolute; or a Blob container URL) drop-in scripts may restore as files
    /// into, with everything under it. Repeat for several; none by default.
    #[arg(long = "script-restore-dir", value_name = "DIR")]
    pub restore_dirs: Vec<RestoreDir>,
    /// A server drop-in scripts may restore a database onto, as HOST (any port) or
    /// HOST:PORT. Repeat for several; none by default.
    #[arg(long = "script-restore-server", value_name = "HOST[:PORT]")]
    pub restore_servers: Vec<ServerGrant>,
    /// An environment variable drop-in scripts may read with env(NAME), or NAME* for every
    /// variable starting so. Repeat for several; none by default (the environment holds
    /// database secrets). Secret values printed anyway show as <redacted>.
    #[arg(long = "script-env", value_name = "NAME")]
    pub env: Vec<String>,
}

impl ScriptGrantArgs {
    pub fn grants(&self) -> Grants {
        Grants {
            destructive: self.allow_destructive_scripts,
            restore_dirs: self.restore_dirs.clone(),
            restore_servers: self.restore_servers.clone(),
            env: self.env.clone(),
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let grants = args.grants.grants();
    if !args.sandbox && grants != Grants::default() {
        anyhow::bail!(
            "--allow-destructive-scripts, --script-restore-dir, --script-restore-server and \
             --script-env say what a sandboxed script may do; add --sandbox (without it the \
             script may do anything)"
        );
    }
    let svc = Arc::new(open_service()?);
    let stop = Interrupt::new();
    let on_sigint = stop_on_sigint(stop.clone())?;
    let mut options = if args.sandbox {
        let mut o = RunOptions::sandboxed(grants);
        o.move_when_done = false;
        o.echo = true;
        o
    } else {
        RunOptions::operator()
    };
    if args.wall_time.is_some() {
        options.limits.wall_time = args.wall_time;
    }
    options.stop = Some(stop);
    let ran = run_script_file(
        svc.clone(),
        &ReadyScript::run_once(&args.file),
        &options,
        Utc::now(),
    )
    .await;
    on_sigint.abort();
    let ran = ran.map_err(coded)?;
    record_orphans(&svc)?;
    match &ran.job.state.error() {
        None if ran.job.status() == JobStatus::Cancelled => {
            eprintln!(
                "{}: cancelled (Ctrl-C); job {}",
                args.file.display(),
                ran.job.id
            );
            Ok(ExitCode::from(CANCELLED_EXIT))
        }
        None => Ok(ExitCode::SUCCESS),
        Some(error) => {
            eprintln!("{}", error.message);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Raises `stop` at the first Ctrl-C and ends the process at the second.
fn stop_on_sigint(stop: Interrupt) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle Ctrl-C")?;
    Ok(tokio::spawn(async move {
        for press in 1.. {
            #[cfg(unix)]
            let pressed = sigint.recv().await.is_some();
            #[cfg(not(unix))]
            let pressed = tokio::signal::ctrl_c().await.is_ok();
            if !pressed {
                return;
            }
            if press == 1 {
                stop.raise_because("Ctrl-C");
            } else {
                std::process::exit(i32::from(CANCELLED_EXIT));
            }
        }
    }))
}

/// Finishes as `Cancelled` the jobs this process left running: an operation the script was
/// waiting for when it was stopped was dropped, so the service never recorded its end. This
/// process ran one script, so every running job of its own belongs to that script.
fn record_orphans(svc: &Pgvault) -> anyhow::Result<()> {
    let owner = current_owner();
    let running = svc
        .jobs(&JobFilter::default().status(JobStatus::InProgress))
        .map_err(coded)?;
    for job in running.into_iter().filter(|j| j.owner == owner) {
        svc.history()
            .finish(
                job.id,
                &JobOutcome::Cancelled,
                Utc::now(),
                job.bytes_read,
                job.bytes_stored,
            )
            .with_context(|| format!("cannot record job {} as cancelled", job.id))?;
        eprintln!("job {} ({}) cancelled", job.id, job.operation);
    }
    Ok(())
}
