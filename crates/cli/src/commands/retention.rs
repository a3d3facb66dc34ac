//! `pgvault retention sweep`: apply the policies' retention now (or as of `--at`).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use pgvault_host::retention::{GcMode, SweepOutcome, VaultSweep};
use pgvault_model::job::JobStatus;

use super::{coded, open_service};
use crate::output::{Format, line, print};
use pgvault_host::service::Pgvault;
use pgvault_model::human;

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Move recovery points to the archive tier and delete expired ones, exactly as the
    /// policies decide (what `backup-policy simulate` shows), then remove the data no
    /// recovery point references. Each move and deletion is a job.
    #[command(
        after_help = "Examples:\n  pgvault retention sweep --dry-run -o table          # what would happen now\n  pgvault retention sweep --vault-name TestBkpVault\n  pgvault retention sweep --at 2027-01-01T00:00:00Z   # as if the clock said so\n\nThe last recovery point of an instance is never deleted. Instances whose protection is\nstopped (stop-protection) keep their recovery points forever, as in Azure."
    )]
    Sweep {
        /// Sweep only this vault (default: every registered vault).
        #[arg(long, short = 'v')]
        vault_name: Option<String>,
        /// Show what would be done, do nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge retention as of this time (RFC 3339 or a date); jobs are recorded at it.
        #[arg(long, value_parser = super::simulate::parse_time)]
        at: Option<DateTime<Utc>>,
    },
}

pub async fn run(cmd: RetentionCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    let RetentionCommand::Sweep {
        vault_name,
        dry_run,
        at,
    } = cmd;
    let at = at.unwrap_or_else(Utc::now);
    let sweeps = match vault_name {
        Some(name) => vec![VaultSweep {
            outcome: Ok(svc
                .retention_sweep(&name, at, dry_run, GcMode::Always)
                .await
                .map_err(coded)?),
            vault: name,
        }],
        None => svc
            .retention_sweep_all(at, dry_run, GcMode::Always)
            .await
            .map_err(coded)?,
    };
    let failed = sweeps.iter().any(|s| match &s.outcome {
        Err(_) => true,
        Ok(o) => {
            o.job
                .as_ref()
                .is_some_and(|j| j.status() == JobStatus::Failed)
                || o.garbage_collection.iter().any(|g| {
                    g.outcome
                        .as_ref()
                        .is_err_and(|e| !e.starts_with("deferred"))
                })
        }
    });
    // A vault that could not be swept is named on stderr too, as any failed command is.
    for s in &sweeps {
        if let Err(e) = &s.outcome {
            eprintln!("vault `{}`: {}: {}", s.vault, e.code, e.message);
        }
    }
    match format {
        Format::Table => print_table(&sweeps, dry_run)?,
        Format::Json => {
            let mut out = Vec::with_capacity(sweeps.len());
            for s in &sweeps {
                out.push(sweep_json(&svc, s).await);
            }
            print(&Value::Array(out), format)?
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A vault's sweep; one that could not run is `{"vault", "error": {"code", "message"}}`.
async fn sweep_json(svc: &Pgvault, s: &VaultSweep) -> Value {
    match &s.outcome {
        Ok(o) => outcome_json(svc, o).await,
        Err(e) => json!({"vault": s.vault, "error": {"code": e.code, "message": e.message}}),
    }
}

async fn outcome_json(svc: &Pgvault, o: &SweepOutcome) -> Value {
    let mut v = serde_json::to_value(o).expect("a sweep outcome serializes");
    if let Some(job) = &o.job {
        v["job"] = svc.job_json(job).await;
        v["actionJobs"] = Value::Array(svc.jobs_json(&o.action_jobs).await);
    }
    v
}

fn print_table(sweeps: &[VaultSweep], dry_run: bool) -> std::io::Result<()> {
    for s in sweeps {
        let o = match &s.outcome {
            Ok(o) => o,
            Err(e) => {
                line(&format!(
                    "Vault {}: not swept: {}: {}",
                    s.vault, e.code, e.message
                ))?;
                continue;
            }
        };
        line(&format!(
            "Vault {}: {} action(s){}",
            o.vault,
            o.plan.actions.len(),
            if dry_run {
                " (dry run: nothing done)"
            } else {
                ""
            }
        ))?;
        if !o.plan.actions.is_empty() {
            line(&format!(
                "  {:<18} {:<26} {:<34} {:<10} Reason",
                "Action", "Recovery point time", "Recovery point", "Tag"
            ))?;
        }
        for (i, a) in o.plan.actions.iter().enumerate() {
            let status = o
                .action_jobs
                .get(i)
                .map(|j| format!(" [{}]", j.status()))
                .unwrap_or_default();
            line(&format!(
                "  {:<18} {:<26} {:<34} {:<10} {}{status}",
                format!("{:?}", a.action),
                human::time(a.recovery_point_time),
                format!(
                    "{}/{}",
                    a.backup_instance_name,
                    &a.recovery_point_id[..8.min(a.recovery_point_id.len())]
                ),
                a.retention_tag_name,
                a.reason
            ))?;
        }
        for w in &o.plan.warnings {
            line(&format!("  warning: {w}"))?;
        }
        for g in &o.garbage_collection {
            match &g.outcome {
                Ok(r) => line(&format!(
                    "  garbage collection ({}): {} pack(s) deleted, {} repacked, {} freed",
                    g.data_store_type,
                    r.dead_packs,
                    r.repacked_packs,
                    human::size(r.bytes_freed)
                ))?,
                Err(e) => line(&format!(
                    "  garbage collection ({}): {e}",
                    g.data_store_type
                ))?,
            }
        }
    }
    Ok(())
}
