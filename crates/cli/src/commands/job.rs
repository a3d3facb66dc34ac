//! `pgvault job ...`: the job history. `list` filters in the history's SQL (vault, instance,
//! status, operation, a start-time window) and, with `-o table`, adds the jobs dashboard (counts
//! per status per instance over the window); `show` prints one job with its sub-tasks; `prune`
//! deletes finished jobs older than a retention, with `--dry-run` to count them first.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use pgvault_host::history::DEFAULT_JOB_HISTORY_RETENTION;
use pgvault_model::code::ErrorCode;
use pgvault_model::duration::IsoDuration;
use pgvault_model::job::{
    Job, JobFilter, JobStatus, JobSummaryRow, OperationFilter, StatusCounts, azure_time,
    retention_cutoff,
};
use pgvault_model::simulate::parse_time;

use super::scope::{Ids, Scope};
use super::{coded, open_service};
use crate::output::{Format, line, print, table};
use pgvault_model::human;
use pgvault_model::resource::ResourceKind;

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List jobs, newest first; with `-o table`, followed by the number of jobs in each
    /// status per backup instance over the same window.
    #[command(after_help = "Examples:\n  \
        pgvault job list --vault-name TestBkpVault -o table\n  \
        pgvault job list --status Failed --operation OnDemandBackup --since 2026-01-01\n  \
        pgvault job list --instance 'pg1\\sales' --since 2026-01-01 --until 2026-02-01 -o table")]
    List {
        /// Only jobs of this vault; every vault's when absent.
        #[arg(long, short = 'v')]
        vault_name: Option<String>,
        /// Only jobs of this backup instance.
        #[arg(long, visible_alias = "instance")]
        backup_instance_name: Option<String>,
        /// Only jobs in this status: InProgress, Completed, Failed or Cancelled (Azure's
        /// Started and Succeeded also work), in any case.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// Only jobs of this operation, in any case: pgvault's (ConfigureBackup,
        /// OnDemandBackup, ScheduledBackup, Restore, ScriptRun, RetentionSweep,
        /// DeleteRecoveryPoint, MoveToArchive, RestoreDrill, Rehydrate), as `pgvaultOperation`
        /// shows them, or Azure's as `operation` shows them (Backup is both backups; Tiering,
        /// Management).
        #[arg(long, value_parser = parse_operation)]
        operation: Option<OperationFilter>,
        /// Only jobs started at or after this time: RFC 3339, or a date meaning its midnight
        /// UTC.
        #[arg(long, visible_alias = "start-time", value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Only jobs started before this time (RFC 3339, or a date meaning its midnight UTC),
        /// so `--since 2026-01-01 --until 2026-02-01` is January.
        #[arg(long, visible_alias = "end-time", value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// At most this many jobs (the table's summary still counts every job in the window).
        #[arg(long)]
        limit: Option<usize>,
        /// With --vault-name, the vault's group; without, only jobs of vaults in this group.
        #[command(flatten)]
        scope: Scope,
    },
    /// Show one job whole, with its sub-tasks.
    #[command(
        after_help = "Example:\n  pgvault job show --job-id 3c60cb49-63e8-4b21-b9bd-26277b3fdfae"
    )]
    Show {
        #[arg(long, short = 'v', conflicts_with = "ids")]
        vault_name: Option<String>,
        #[arg(
            long,
            alias = "name",
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        job_id: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Delete finished jobs (and their sub-tasks) that ended longer ago than a retention from
    /// the job history. Jobs still in progress are always kept. Recovery points are not
    /// touched: the history is a record, not the vault.
    #[command(after_help = "Examples:\n  \
        pgvault job prune --older-than P90D --dry-run\n  \
        pgvault job prune --older-than P1Y")]
    Prune {
        /// ISO 8601 duration, subtracted from now calendar-wise (P1M before March 31 is
        /// February 28). Default: P365D, the history the host keeps.
        #[arg(long, value_parser = parse_retention)]
        older_than: Option<IsoDuration>,
        /// Count the jobs that would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Measure ages from this time instead of now (RFC 3339, or a date meaning its
        /// midnight UTC).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_operation(s: &str) -> Result<OperationFilter, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// A retention for `prune`: an ISO duration that is not zero, since zero would empty the
/// history of every finished job, which is never what "older than" means.
pub fn parse_retention(s: &str) -> Result<IsoDuration, String> {
    let keep: IsoDuration = s.parse().map_err(|e| format!("{e}"))?;
    if keep.is_zero() {
        return Err(format!(
            "{s} would delete every finished job; give how long to keep jobs, such as P90D"
        ));
    }
    Ok(keep)
}

/// The filter `job list` asks for, checked: a window that ends before it starts is a typo,
/// not an empty answer.
fn list_filter(
    vault_name: Option<String>,
    backup_instance_name: Option<String>,
    status: Option<JobStatus>,
    operation: Option<OperationFilter>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<usize>,
) -> anyhow::Result<JobFilter> {
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        anyhow::bail!(
            "--since {} is not before --until {}; the window is [since, until), so give an \
             earlier --since or a later --until",
            since.to_rfc3339(),
            until.to_rfc3339()
        );
    }
    Ok(JobFilter {
        vault: vault_name,
        instance: backup_instance_name,
        status,
        operation,
        started_after: since,
        started_before: until,
        limit,
        offset: 0,
    })
}

pub async fn run(cmd: JobCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        JobCommand::List {
            vault_name,
            backup_instance_name,
            status,
            operation,
            since,
            until,
            limit,
            scope,
        } => {
            let group = scope.group()?;
            match &vault_name {
                Some(vault) => scope.check_vault(&svc, vault).await?,
                None => scope.check_subscription(&svc)?,
            }
            let filter = list_filter(
                vault_name,
                backup_instance_name,
                status,
                operation,
                since,
                until,
                limit,
            )?;
            let mut jobs = svc.jobs(&filter).map_err(coded)?;
            if let Some(group) = group.filter(|_| filter.vault.is_none()) {
                let mut kept = Vec::with_capacity(jobs.len());
                for job in jobs {
                    if let Some(vault) = job.vault()
                        && svc.vault_group(vault).await.is_ok_and(|g| g == group)
                    {
                        kept.push(job);
                    }
                }
                jobs = kept;
            }
            print(&Value::Array(svc.jobs_json(&jobs).await), format)?;
            if format == Format::Table {
                let summary = svc.history().summary(&filter).map_err(|e| {
                    anyhow::anyhow!(
                        "{code}: job history: {e}",
                        code = ErrorCode::JobHistoryError
                    )
                })?;
                line(&format!("\n{}", summary_table(&summary, since, until)))?;
            }
        }
        JobCommand::Show {
            vault_name,
            job_id,
            ids,
        } => {
            let vault_name_was_absent = vault_name.is_none();
            let (vault_name, job_id) = if ids.ids.is_empty() {
                if let Some(vault) = &vault_name {
                    ids.scope.check_vault(&svc, vault).await?;
                } else {
                    ids.scope.check_subscription(&svc)?;
                }
                (vault_name, job_id.unwrap_or_default())
            } else {
                let mut targets = ids
                    .targets(&svc, ResourceKind::Job, None, None, None)
                    .await?;
                if targets.len() != 1 {
                    anyhow::bail!(
                        "{code}: give one job id to --ids",
                        code = ErrorCode::UserErrorInvalidInput
                    );
                }
                let t = targets.remove(0);
                (Some(t.vault), t.name.unwrap_or_default())
            };
            let job = svc.job(&job_id).map_err(coded)?;
            if let Some(v) = vault_name
                && !job.vault().is_some_and(|own| own.eq_ignore_ascii_case(&v))
            {
                anyhow::bail!(
                    "{code}: job {job_id} belongs to {}, not to vault `{v}`; \
                     leave out --vault-name to show it",
                    job.vault()
                        .map(|own| format!("vault `{own}`"))
                        .unwrap_or_else(|| "no vault".to_owned()),
                    code = ErrorCode::UserErrorJobNotFound
                );
            }
            // -g without --vault-name: the job's vault must be in that group.
            if let Some(group) = ids.scope.group()?
                && vault_name_was_absent
            {
                let own = match job.vault() {
                    Some(vault) => svc.vault_group(vault).await.ok(),
                    None => None,
                };
                if own.as_ref() != Some(&group) {
                    anyhow::bail!(
                        "{code}: job {job_id} is not a job of a vault in resource group `{group}`{}",
                        own.map(|g| format!(" (its vault is in `{g}`)"))
                            .unwrap_or_default(),
                        code = ErrorCode::UserErrorJobNotFound
                    );
                }
            }
            print(&svc.job_json(&job).await, format)?;
            if format == Format::Table && !job.tasks.is_empty() {
                line(&format!("\n{}", tasks_table(&job)))?;
            }
        }
        JobCommand::Prune {
            older_than,
            dry_run,
            at,
        } => {
            let keep = older_than.unwrap_or(DEFAULT_JOB_HISTORY_RETENTION);
            let cutoff = retention_cutoff(at.unwrap_or_else(Utc::now), &keep);
            let history = svc.history();
            let jobs = if dry_run {
                history.prunable(cutoff)
            } else {
                history.prune(cutoff)
            }
            .map_err(|e| {
                anyhow::anyhow!(
                    "{code}: job history: {e}",
                    code = ErrorCode::JobHistoryError
                )
            })?;
            let report = json!({
                "olderThan": keep.to_string(),
                "cutoff": azure_time(cutoff),
                "dryRun": dry_run,
                "jobs": jobs,
            });
            match format {
                Format::Json => print(&report, format)?,
                Format::Table => line(&prune_sentence(jobs, cutoff, dry_run))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn prune_sentence(jobs: usize, cutoff: DateTime<Utc>, dry_run: bool) -> String {
    let verb = if dry_run { "Would delete" } else { "Deleted" };
    let noun = if jobs == 1 { "job" } else { "jobs" };
    format!(
        "{verb} {jobs} {noun} that ended before {}.",
        human::time(cutoff)
    )
}

/// The jobs dashboard as a table: a row per vault and instance, a column per status, a
/// total row, under a line naming the window.
fn summary_table(
    rows: &[JobSummaryRow],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> String {
    let window = match (since, until) {
        (None, None) => "all jobs".to_owned(),
        (Some(s), None) => format!("jobs started since {}", human::time(s)),
        (None, Some(u)) => format!("jobs started before {}", human::time(u)),
        (Some(s), Some(u)) => format!("jobs started from {} to {}", human::time(s), human::time(u)),
    };
    let mut headers = vec!["Vault", "Instance"];
    headers.extend(JobStatus::ALL.map(JobStatus::as_str));
    headers.extend(["Late", "Total"]);
    let counts = |counts: &StatusCounts, late: u64| {
        JobStatus::ALL
            .map(|s| counts.get(s).to_string())
            .into_iter()
            .chain([late.to_string(), counts.total().to_string()])
    };
    let mut total = StatusCounts::default();
    let mut total_late = 0;
    let mut lines: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            for status in JobStatus::ALL {
                total.add(status, row.counts.get(status));
            }
            total_late += row.late;
            [
                row.vault_name.clone().unwrap_or_else(|| "(none)".into()),
                row.backup_instance_name
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
            ]
            .into_iter()
            .chain(counts(&row.counts, row.late))
            .collect()
        })
        .collect();
    lines.push(
        ["Total".to_owned(), String::new()]
            .into_iter()
            .chain(counts(&total, total_late))
            .collect(),
    );
    format!("Summary of {window}:\n{}", table(&headers, &lines))
}

/// A job's sub-tasks as a table, for `job show -o table`.
fn tasks_table(job: &Job) -> String {
    let rows: Vec<Vec<String>> = job
        .tasks
        .iter()
        .map(|task| {
            vec![
                task.id.to_string(),
                task.name.clone(),
                task.status().to_string(),
                human::time(task.state.start()),
                task.state
                    .end()
                    .map(|end| human::duration(end - task.state.start()))
                    .unwrap_or_default(),
                // One line per task: a multi-line detail shows its first line.
                task.detail
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or_default()
                    .to_owned(),
            ]
        })
        .collect();
    table(
        &["Task", "Name", "Status", "Start", "Duration", "Detail"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pgvault_model::job::{AzureOperation, Operation};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: JobCommand,
    }

    fn parse(args: &[&str]) -> Result<JobCommand, String> {
        Cli::try_parse_from(["job"].iter().chain(args))
            .map(|cli| cli.command)
            .map_err(|e| e.to_string())
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn list(args: &[&str]) -> Result<JobFilter, String> {
        match parse(args)? {
            JobCommand::List {
                vault_name,
                backup_instance_name,
                status,
                operation,
                since,
                until,
                limit,
                ..
            } => list_filter(
                vault_name,
                backup_instance_name,
                status,
                operation,
                since,
                until,
                limit,
            )
            .map_err(|e| e.to_string()),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn list_flags_become_a_filter() {
        let all = JobFilter::default();
        // (arguments, the filter, or words of the error)
        let cases: [(&[&str], Result<JobFilter, &str>); 13] = [
            (&["list"], Ok(all.clone())),
            (
                &["list", "--vault-name", "V", "--instance", "pg1\\db"],
                Ok(all.clone().vault("V").instance("pg1\\db")),
            ),
            (
                &["list", "-v", "V", "--backup-instance-name", "db"],
                Ok(all.clone().vault("V").instance("db")),
            ),
            (
                &["list", "--status", "succeeded", "--operation", "scriptrun"],
                Ok(all
                    .clone()
                    .status(JobStatus::Completed)
                    .operation(Operation::ScriptRun)),
            ),
            (
                &["list", "--operation", "RETENTIONSWEEP"],
                Ok(all.clone().operation(Operation::RetentionSweep)),
            ),
            (
                &[
                    "list",
                    "--since",
                    "2026-01-01",
                    "--until",
                    "2026-02-01T00:00:00+01:00",
                ],
                Ok(all
                    .clone()
                    .started_after(at("2026-01-01T00:00:00Z"))
                    .started_before(at("2026-01-31T23:00:00Z"))),
            ),
            (
                // The names of the first version of `job list` still work.
                &[
                    "list",
                    "--start-time",
                    "2026-01-01T02:00:00Z",
                    "--end-time",
                    "2026-01-02",
                    "--limit",
                    "3",
                ],
                Ok(all
                    .clone()
                    .started_after(at("2026-01-01T02:00:00Z"))
                    .started_before(at("2026-01-02T00:00:00Z"))
                    .limit(3)),
            ),
            (&["list", "--status", "Done"], Err("is not a job status")),
            (
                &["list", "--operation", "backup"],
                Ok(all
                    .clone()
                    .operation(OperationFilter::Azure(AzureOperation::Backup))),
            ),
            (
                &["list", "--operation", "Archive"],
                Err("expected one of ConfigureBackup"),
            ),
            (&["list", "--since", "yesterday"], Err("is not a time")),
            (
                &["list", "--since", "2026-02-01", "--until", "2026-01-01"],
                Err("is not before --until"),
            ),
            (
                &["list", "--since", "2026-01-01", "--until", "2026-01-01"],
                Err("is not before --until"),
            ),
        ];
        for (args, want) in cases {
            match (list(args), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{args:?}"),
                (Err(got), Err(words)) => assert!(got.contains(words), "{args:?}: {got}"),
                (got, want) => panic!("{args:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn prune_flags() {
        // (arguments, expected (retention, dry run, at), or words of the error)
        type Want = Result<(Option<&'static str>, bool, Option<&'static str>), &'static str>;
        let cases: [(&[&str], Want); 6] = [
            (&["prune"], Ok((None, false, None))),
            (
                &["prune", "--older-than", "P90D", "--dry-run"],
                Ok((Some("P90D"), true, None)),
            ),
            (
                &["prune", "--older-than", "p1y", "--at", "2026-01-01"],
                Ok((Some("P1Y"), false, Some("2026-01-01T00:00:00Z"))),
            ),
            (
                &["prune", "--older-than", "P0D"],
                Err("would delete every finished job"),
            ),
            (
                &["prune", "--older-than", "90 days"],
                Err("invalid ISO 8601 duration"),
            ),
            (&["prune", "--older-than=-P1D"], Err("negative durations")),
        ];
        for (args, want) in cases {
            let got = parse(args).map(|cmd| match cmd {
                JobCommand::Prune {
                    older_than,
                    dry_run,
                    at,
                } => (older_than.map(|d| d.to_string()), dry_run, at),
                other => panic!("not a prune: {other:?}"),
            });
            match (got, want) {
                (Ok(got), Ok((keep, dry, when))) => assert_eq!(
                    got,
                    (keep.map(str::to_owned), dry, when.map(at)),
                    "{args:?}"
                ),
                (Err(got), Err(words)) => assert!(got.contains(words), "{args:?}: {got}"),
                (got, want) => panic!("{args:?}: got {got:?}, wanted {want:?}"),
            }
        }
        // The help's default is the host's.
        assert_eq!(DEFAULT_JOB_HISTORY_RETENTION.to_string(), "P365D");
    }

    #[test]
    fn prune_reports_in_a_sentence() {
        let cutoff = at("2025-06-01T00:00:00Z");
        let cases = [
            (
                0,
                true,
                "Would delete 0 jobs that ended before 2025-06-01T00:00:00Z.",
            ),
            (
                1,
                false,
                "Deleted 1 job that ended before 2025-06-01T00:00:00Z.",
            ),
            (
                12,
                false,
                "Deleted 12 jobs that ended before 2025-06-01T00:00:00Z.",
            ),
        ];
        for (jobs, dry_run, want) in cases {
            assert_eq!(prune_sentence(jobs, cutoff, dry_run), want);
        }
    }

    #[test]
    fn the_summary_table_has_a_row_per_instance_and_a_total() {
        let row = |vault: Option<&str>, instance: Option<&str>, counts: [u64; 4], late: u64| {
            let mut c = StatusCounts::default();
            for (status, n) in JobStatus::ALL.into_iter().zip(counts) {
                c.add(status, n);
            }
            JobSummaryRow {
                vault_name: vault.map(str::to_owned),
                backup_instance_name: instance.map(str::to_owned),
                counts: c,
                late,
            }
        };
        let rows = [
            row(None, None, [0, 1, 0, 0], 0),
            row(Some("vault-a"), Some("pg1\\sales"), [1, 20, 2, 0], 3),
        ];
        let text = summary_table(&rows, Some(at("2026-01-01T00:00:00Z")), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Summary of jobs started since 2026-01-01T00:00:00Z:"
        );
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "Vault",
                "Instance",
                "InProgress",
                "Completed",
                "Failed",
                "Cancelled",
                "Late",
                "Total"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            ["(none)", "(none)", "0", "1", "0", "0", "0", "1"]
        );
        assert_eq!(
            cells(lines[4]),
            ["vault-a", "pg1\\sales", "1", "20", "2", "0", "3", "23"]
        );
        assert_eq!(cells(lines[5]), ["Total", "1", "21", "2", "0", "3", "24"]);

        let empty = summary_table(&[], None, None);
        assert!(empty.starts_with("Summary of all jobs:"), "{empty}");
        assert!(
            empty.lines().last().unwrap().starts_with("Total"),
            "{empty}"
        );
    }

    #[test]
    fn the_tasks_table_shows_one_line_per_task() {
        use pgvault_model::job::{JobOwner, NewJob, TASK_DUMP, TASK_VALIDATE, TaskOutcome};
        let start = at("2026-01-01T02:00:00Z");
        let mut job = Job::start(&NewJob::new(
            Operation::OnDemandBackup,
            "v",
            start,
            JobOwner::new(1, "h"),
        ));
        let validate = job.start_task(TASK_VALIDATE, start).unwrap();
        job.finish_task(
            validate,
            TaskOutcome::Completed,
            Some("connected\nas backup"),
            start + chrono::TimeDelta::seconds(3),
        )
        .unwrap();
        job.start_task(TASK_DUMP, start).unwrap();
        let text = tasks_table(&job);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[2].contains("Validate") && lines[2].contains("2026-01-01T02:00:00Z  3.0 s"),
            "{text}"
        );
        assert!(lines[2].trim_end().ends_with("connected"), "{text}");
        assert!(
            lines[3].contains("Dump") && lines[3].contains("InProgress"),
            "{text}"
        );
    }
}
