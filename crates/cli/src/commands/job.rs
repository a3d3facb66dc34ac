//! `pgvault job ...`

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::Value;

use pgvault_core::model::job::JobFilter;
use pgvault_core::model::resource::vault_id;

use super::{coded, open_service};
use crate::output::{Format, print};

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List jobs, newest first.
    #[command(
        after_help = "Example:\n  pgvault job list --vault-name TestBkpVault -o table\n  pgvault job list --status Failed --operation OnDemandBackup --start-time 2026-01-01T00:00:00Z"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: Option<String>,
        #[arg(long)]
        backup_instance_name: Option<String>,
        /// InProgress, Completed, Failed or Cancelled.
        #[arg(long)]
        status: Option<String>,
        /// ConfigureBackup, OnDemandBackup, ScheduledBackup, Restore or ScriptRun.
        #[arg(long)]
        operation: Option<String>,
        /// Only jobs started at or after this RFC 3339 time.
        #[arg(long)]
        start_time: Option<String>,
        /// Only jobs started before this RFC 3339 time.
        #[arg(long)]
        end_time: Option<String>,
        /// At most this many jobs.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one job whole.
    #[command(
        after_help = "Example:\n  pgvault job show --job-id 3c60cb49-63e8-4b21-b9bd-26277b3fdfae"
    )]
    Show {
        #[arg(long, short = 'v')]
        vault_name: Option<String>,
        #[arg(long, alias = "name")]
        job_id: String,
    },
}

fn time(s: &Option<String>, flag: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    s.as_deref()
        .map(|t| DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&Utc)))
        .transpose()
        .with_context(|| format!("{flag} must be an RFC 3339 time like 2026-01-31T02:00:00Z"))
}

pub async fn run(cmd: JobCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        JobCommand::List {
            vault_name,
            backup_instance_name,
            status,
            operation,
            start_time,
            end_time,
            limit,
        } => {
            let filter = JobFilter {
                vault: vault_name,
                instance: backup_instance_name,
                status: status
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--status: {e}"))?,
                operation: operation
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--operation: {e}"))?,
                started_after: time(&start_time, "--start-time")?,
                started_before: time(&end_time, "--end-time")?,
                limit,
            };
            let jobs = svc.jobs(&filter).map_err(coded)?;
            print(
                &Value::Array(
                    jobs.iter()
                        .map(|j| j.to_azure_json(&vault_id(&j.vault_name)))
                        .collect(),
                ),
                format,
            );
        }
        JobCommand::Show { vault_name, job_id } => {
            let job = svc.job(&job_id).map_err(coded)?;
            if let Some(v) = vault_name
                && !job.vault_name.eq_ignore_ascii_case(&v)
            {
                anyhow::bail!(
                    "UserErrorJobNotFound: job {job_id} belongs to vault `{}`, not `{v}`",
                    job.vault_name
                );
            }
            print(&job.to_azure_json(&vault_id(&job.vault_name)), format);
        }
    }
    Ok(ExitCode::SUCCESS)
}
