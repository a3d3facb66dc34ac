//! `pgvault tick [--at T]`: one turn of the host's agenda (`pgvault_host::agenda`, the one
//! `serve` asks at each turn of its loop): scheduled backups, the restore drills policies ask
//! for, the retention sweep with history pruning, then drop-in scripts; then exit.

use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use serde_json::{Value, json};

use pgvault_model::job::{Job, JobStatus};

use pgvault_host::agenda::{Agenda, Ticked, Work, tick};
use pgvault_host::dropin::{DEFAULT_SETTLE, RunOptions, ScriptsDir};

use super::{coded, open_service};
use crate::output::{Format, print};

#[derive(Args, Debug)]
pub struct TickArgs {
    /// Act as if the time were this (RFC 3339 or a date): what is due, and the time the
    /// backups are recorded at. Default: now.
    #[arg(long, value_parser = super::simulate::parse_time)]
    at: Option<DateTime<Utc>>,
    /// The drop-in scripts folder (see `pgvault serve --help`). Default:
    /// $PGVAULT_HOME/scripts.
    #[arg(long)]
    scripts_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    script_grants: super::run::ScriptGrantArgs,
    /// Finished jobs older than this (ISO 8601 duration) are pruned, as `serve` does daily.
    #[arg(long, value_parser = super::job::parse_retention, default_value = "P365D")]
    keep_job_history: pgvault_model::duration::IsoDuration,
}

/// Prints the jobs the pass ran (Azure's job JSON, or a table); exits non-zero when any of
/// them failed, so a timer unit shows the failure.
pub async fn run(args: TickArgs, format: Format) -> anyhow::Result<ExitCode> {
    let svc = std::sync::Arc::new(open_service()?);
    let now = args.at.unwrap_or_else(Utc::now);
    let dir = args
        .scripts_dir
        .unwrap_or_else(|| svc.home().dir().join("scripts"));
    let mut agenda = Agenda::new()
        .sweeping(TimeDelta::days(1), args.keep_job_history)
        .alerting(pgvault_host::agenda::DEFAULT_OVERDUE_GRACE)
        .with_scripts(
            ScriptsDir::new(dir, DEFAULT_SETTLE),
            RunOptions::sandboxed(args.script_grants.grants()),
        );
    let mut failed = false;
    let mut jobs = Vec::new();
    // Jobs are rendered after the loop (their ids need their vaults' groups): a `null`
    // holds each one's place among the errors.
    let mut ran: Vec<(usize, Job)> = Vec::new();
    let mut push = |job: &Job, jobs: &mut Vec<Value>, failed: &mut bool| {
        *failed |= job.status() == JobStatus::Failed;
        ran.push((jobs.len(), job.clone()));
        jobs.push(Value::Null);
    };
    for ticked in tick(&svc, &mut agenda, now).await.map_err(coded)? {
        match ticked {
            Ticked::Job { job: Ok(job), .. } => push(&job, &mut jobs, &mut failed),
            Ticked::Job { work, job: Err(e) } => {
                failed = true;
                let (vault, instance, what) = match &work {
                    Work::Backup(w) => (
                        &w.vault,
                        &w.instance,
                        format!("the scheduled backup due {}", w.due.due),
                    ),
                    Work::Drill(d) => (
                        &d.vault,
                        &d.instance,
                        format!("the restore drill ({})", d.reason),
                    ),
                    _ => unreachable!("only backups and drills are job work"),
                };
                eprintln!(
                    "{vault}/{instance}: {what} could not start: {}: {}",
                    e.code, e.message
                );
                jobs.push(json!({"vault": vault, "instance": instance, "error": {"code": e.code, "message": e.message}}));
            }
            Ticked::Sweep { vaults, pruned } => {
                if let Err(e) = pruned {
                    failed = true;
                    eprintln!("pruning the job history failed: {}: {}", e.code, e.message);
                }
                for sweep in vaults.map_err(coded)? {
                    let sweep_outcome = match sweep.outcome {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            failed = true;
                            eprintln!(
                                "{}: the retention sweep failed: {}: {}",
                                sweep.vault, e.code, e.message
                            );
                            jobs.push(json!({"vault": sweep.vault, "error": {"code": e.code, "message": e.message}}));
                            continue;
                        }
                    };
                    for job in sweep_outcome.action_jobs.iter().chain(&sweep_outcome.job) {
                        push(job, &mut jobs, &mut failed);
                    }
                }
            }
            Ticked::Script { job, .. } => push(&job.map_err(coded)?, &mut jobs, &mut failed),
            // Notices are not jobs: what was sent is in `alert list`.
            Ticked::Alerts(sent) => {
                if let Err(e) = sent {
                    tracing::warn!(code = %e.code, "alert notices: {}", e.message);
                }
            }
        }
    }
    for (at, job) in ran {
        jobs[at] = svc.job_json(&job).await;
    }
    print(&Value::Array(jobs), format)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
