//! `pgvault run FILE`: a Rhai runbook against pgvault's API, recorded as a `ScriptRun` job.
//!
//! The script runs through the same code as the host's drop-in scripts
//! (`pgvault_host::dropin::run_script_file`) with the operator's defaults: destructive calls
//! allowed, no limits unless `--wall-time` is given, the file left where it is, and what the
//! script prints written to stdout as it prints it (and kept with the job). Ctrl-C stops the
//! script and the operation it waits for, and records the job as `Cancelled`; a second
//! Ctrl-C ends the process at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;

use pgvault_core::model::duration::IsoDuration;
use pgvault_core::model::job::{JobFilter, JobOutcome, JobStatus};
use pgvault_host::dropin::{ReadyScript, RunOptions, run_script_file};
use pgvault_host::history::current_owner;
use pgvault_host::script::Interrupt;
use pgvault_host::service::Pgvault;

use super::{coded, open_service};

/// The exit code of a run stopped by Ctrl-C, as a shell reports a process SIGINT ended.
const CANCELLED_EXIT: u8 = 130;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The script to run.
    pub file: PathBuf,
    /// Stop the script, and the operation it waits for, after this long: an ISO 8601
    /// duration such as PT30M or PT2H. Without it the script runs until it ends.
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

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let svc = Arc::new(open_service()?);
    let stop = Interrupt::new();
    let on_sigint = stop_on_sigint(stop.clone())?;
    let mut options = RunOptions::operator();
    options.limits.wall_time = args.wall_time;
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
