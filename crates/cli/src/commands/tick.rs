//! `pgvault tick [--at T]`: one pass of the host's loop (scheduled backups, the restore drills
//! policies ask for, the retention sweep, then drop-in scripts), then exit.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{Value, json};

use pgvault_model::resource::vault_id;

use pgvault_host::dropin::{DEFAULT_SETTLE, RunOptions, ScriptsDir, run_script_file};
use pgvault_host::retention::GcMode;

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
}

/// Prints the jobs the pass ran (Azure's job JSON, or a table); exits non-zero when any of
/// them failed, so a timer unit shows the failure.
pub async fn run(args: TickArgs, format: Format) -> anyhow::Result<ExitCode> {
    let svc = std::sync::Arc::new(open_service()?);
    let now = args.at.unwrap_or_else(Utc::now);
    let outcomes = svc.tick(now).await.map_err(coded)?;
    let mut failed = false;
    let mut jobs = Vec::new();
    for outcome in outcomes {
        match outcome.job {
            Ok(job) => {
                failed |= job.status() == pgvault_model::job::JobStatus::Failed;
                jobs.push(job.to_azure_json(&vault_id(&job.vault_name)));
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "{}/{}: the scheduled backup due {} could not start: {}: {}",
                    outcome.vault, outcome.instance, outcome.due.due, e.code, e.message
                );
                jobs.push(json!({"vault": outcome.vault, "instance": outcome.instance, "error": {"code": e.code, "message": e.message}}));
            }
        }
    }
    // Restore drills the policies ask for, after the backups: a drill due after a number of
    // backups counts the ones just taken.
    for outcome in svc.drill_tick(now).await.map_err(coded)? {
        match outcome.job {
            Ok(job) => {
                failed |= job.status() == pgvault_model::job::JobStatus::Failed;
                jobs.push(job.azure_json());
            }
            Err(e) => {
                failed = true;
                let d = &outcome.drill;
                eprintln!(
                    "{}/{}: the restore drill ({}) could not start: {}: {}",
                    d.vault, d.instance, d.reason, e.code, e.message
                );
                jobs.push(json!({"vault": d.vault, "instance": d.instance, "error": {"code": e.code, "message": e.message}}));
            }
        }
    }
    // Retention as of the same clock; garbage is collected when something was deleted or the
    // last collection is a day old.
    for sweep in svc
        .retention_sweep_all(now, false, GcMode::WhenDue)
        .await
        .map_err(coded)?
    {
        let sweep = match sweep.outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                failed = true;
                eprintln!(
                    "{}: the retention sweep failed: {}: {}",
                    sweep.vault, e.code, e.message
                );
                jobs.push(
                    json!({"vault": sweep.vault, "error": {"code": e.code, "message": e.message}}),
                );
                continue;
            }
        };
        for job in sweep.action_jobs.iter().chain(&sweep.job) {
            failed |= job.status() == pgvault_model::job::JobStatus::Failed;
            jobs.push(job.azure_json());
        }
    }
    // Drop-in scripts that are ready (unchanged for a moment) and recurring ones that are due.
    let dir = args
        .scripts_dir
        .unwrap_or_else(|| svc.home().dir().join("scripts"));
    let mut scripts = ScriptsDir::new(dir, DEFAULT_SETTLE);
    let mut ready = scripts.scan_at_startup(now, std::time::SystemTime::now());
    ready.extend(scripts.recurring_due(&svc, now).map_err(coded)?);
    let options = RunOptions::sandboxed(args.script_grants.grants());
    for script in &ready {
        let ran = run_script_file(svc.clone(), script, &options, now)
            .await
            .map_err(coded)?;
        failed |= ran.job.status() == pgvault_model::job::JobStatus::Failed;
        jobs.push(ran.job.azure_json());
    }
    print(&Value::Array(jobs), format)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
