//! `pgvault backup-policy ...`: templates and stored policies, and the az CLI's policy editing
//! commands (`trigger`, `retention-rule`, `tag`) plus `validate`.
//!
//! The editing commands work on files as the az CLI does: each reads a policy (and
//! lifecycles or criteria), applies one edit from [`pgvault_model::policy_edit`], and
//! prints the policy for the next step to read (`> EditedPolicy.json`). Inputs are read
//! leniently (property names in any case, a lone object where an array is declared, inline
//! JSON like the az CLI's "JSON string or file") and the output is the normalized JSON. They
//! do not validate the whole policy, because a policy is incomplete between two edits; run
//! `validate` (or `create`, which validates) when it is done.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde_json::Value;

use pgvault_host::api::limits;
use pgvault_model::code::ErrorCode;
use pgvault_model::duration::{DurationUnit, IsoDuration};
use pgvault_model::policy::{
    AbsoluteMarker, BackupPolicy, DataStoreType, DatasourceType, PolicyError,
    ScheduleBasedBackupCriteria, SourceLifeCycle, azure_compatibility_warnings, from_lenient_value,
};
use pgvault_model::policy_edit::{self, CopyOptionKind, IntervalType};
use pgvault_model::templates::default_policy_template;

use super::scope::{Ids, Scope, one_or_list};
use super::{coded, open_service};
use crate::output::{Format, print, render};
use pgvault_model::resource::ResourceKind;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the default policy for a datasource type: weekly backups kept three months in the vault.
    #[command(
        after_help = "Example:\n  pgvault backup-policy get-default-policy-template --datasource-type AzureDatabaseForPostgreSQLFlexibleServer > policy.json"
    )]
    GetDefaultPolicyTemplate {
        /// AzureDatabaseForPostgreSQLFlexibleServer or AzureDatabaseForPostgreSQL.
        #[arg(long)]
        datasource_type: String,
    },
    /// Create a policy in a vault from a policy JSON file (a policy is never updated in place, as in Azure).
    #[command(
        after_help = "Example:\n  pgvault backup-policy create --vault-name TestBkpVault --backup-policy-name OssPolicy --policy policy.json"
    )]
    Create {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[command(flatten)]
        scope: Scope,
        /// Name of the new policy.
        #[arg(long, short = 'n', alias = "name")]
        backup_policy_name: String,
        /// Policy JSON file (`-` for stdin), as get-default-policy-template prints.
        #[arg(long)]
        policy: PathBuf,
    },
    /// Show a policy.
    #[command(
        after_help = "Example:\n  pgvault backup-policy show --vault-name TestBkpVault --name OssPolicy"
    )]
    Show {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[arg(
            long,
            short = 'n',
            alias = "backup-policy-name",
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        name: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Delete a policy no backup instance uses (as in Azure, one in use is kept).
    #[command(
        after_help = "Example:\n  pgvault backup-policy delete --vault-name TestBkpVault --name OssPolicy --yes"
    )]
    Delete {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[arg(
            long,
            short = 'n',
            alias = "backup-policy-name",
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        name: Option<String>,
        #[command(flatten)]
        ids: Ids,
        /// Confirm the deletion.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List a vault's policies.
    #[command(
        after_help = "Example:\n  pgvault backup-policy list --vault-name TestBkpVault -o table"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Create a backup schedule and set it in a policy.
    #[command(subcommand)]
    Trigger(TriggerCommand),
    /// Create lifecycles and add, change or remove retention rules in a policy.
    #[command(subcommand)]
    RetentionRule(RetentionRuleCommand),
    /// Create tagging criteria and add, change or remove tags in a policy.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Check a policy file: print it normalized, or every problem with its JSON path (one per line, exit status 1).
    #[command(
        after_help = "Example:\n  pgvault backup-policy validate --policy AddedRetentionRuleAndTag.json --azure-compatible"
    )]
    Validate {
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
        /// Also warn (on stderr) about what pgvault accepts but Azure Backup would refuse:
        /// daily or hourly schedules, tags other than Weekly, Monthly and Yearly, IANA time zones.
        #[arg(long)]
        azure_compatible: bool,
    },
    /// Show what a policy keeps: every scheduled backup in [--from, --to) assumed to succeed,
    /// each tagged and retained as the vault would, and where each is as of --at.
    #[command(after_help = "Examples:
  pgvault backup-policy simulate --policy policy.json --from 2025-01-01 --to 2035-01-01
  pgvault backup-policy simulate --policy policy.json --from 2025-01-01 --to 2035-01-01 --at 2030-06-01 -o table
  pgvault backup-policy simulate --policy policy.json --from 2025-01-01 --to 2035-01-01 --plot ten-years.svg

Times are RFC 3339 (2025-01-01T00:00:00Z) or dates (2025-01-01, midnight UTC).
JSON output: {\"recoveryPoints\": [{\"recoveryPointTime\", \"retentionTagName\", \"dataStores\": [{\"dataStoreType\", \"from\", \"until\"}], \"stateAt\"}], \"summary\": {\"VaultStore\", \"ArchiveStore\", \"Deleted\"}}")]
    Simulate {
        /// Policy JSON file (`-` for stdin, or inline JSON); it must be valid.
        #[arg(long)]
        policy: PathBuf,
        /// Start of the window of scheduled backups (inclusive).
        #[arg(long, value_parser = super::simulate::parse_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the window (exclusive).
        #[arg(long, value_parser = super::simulate::parse_time)]
        to: chrono::DateTime<chrono::Utc>,
        /// The time the state and summary are reported at (default: --to). May be after --to,
        /// to see what the backups taken in the window become later.
        #[arg(long, value_parser = super::simulate::parse_time)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Also draw the timeline as an SVG file: one row per tier, recovery points as marks,
        /// retention as bars.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// Create a schedule: one repeating time interval per day given, weekly, daily or every few hours.
    #[command(
        after_help = "Example:\n  pgvault backup-policy trigger create-schedule --interval-type Weekly --interval-count 1 --schedule-days 2021-08-15T22:00:00 2021-08-18T22:00:00 2021-08-20T22:00:00"
    )]
    CreateSchedule {
        /// Weekly, Daily or Hourly.
        #[arg(long)]
        interval_type: IntervalType,
        /// 1 for Weekly and Daily; 4, 6, 8 or 12 (hours) for Hourly.
        #[arg(long)]
        interval_count: u32,
        /// The first backup of each series, in UTC without offset (YYYY-MM-DDThh:mm:ss);
        /// a weekly series repeats on that date's weekday.
        #[arg(long, num_args = 1.., required = true)]
        schedule_days: Vec<String>,
    },
    /// Set the schedule of a policy's backup rule, naming the rule BackupWeekly, BackupDaily or BackupHourly after it.
    #[command(
        after_help = "Example:\n  pgvault backup-policy trigger set --policy OSSPolicy.json --schedule R/2021-08-15T22:00:00+00:00/P1W R/2021-08-18T22:00:00+00:00/P1W > EditedOSSPolicy.json"
    )]
    Set {
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
        /// Repeating time intervals, as create-schedule prints them.
        #[arg(long, num_args = 1.., required = true)]
        schedule: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionRuleCommand {
    /// Create a lifecycle: how long backups stay in a datastore, and whether they are copied (moved) to another first.
    #[command(
        after_help = "Examples:\n  pgvault backup-policy retention-rule create-lifecycle --retention-duration-count 6 --retention-duration-type Months --source-datastore VaultStore > VaultLifeCycle.json\n  pgvault backup-policy retention-rule create-lifecycle --count 6 --type Months --source-datastore VaultStore --target-datastore ArchiveStore --copy-option CopyOnExpiryOption > VaultToArchive.json\n  pgvault backup-policy retention-rule create-lifecycle --count 24 --type Months --source-datastore ArchiveStore > OnArchive.json"
    )]
    CreateLifecycle {
        /// VaultStore or ArchiveStore: where the backups are.
        #[arg(long)]
        source_datastore: DataStoreType,
        /// Days, Weeks, Months or Years.
        #[arg(long, visible_alias = "type")]
        retention_duration_type: DurationUnit,
        /// How many of them a backup is kept in the source datastore.
        #[arg(long, visible_alias = "count")]
        retention_duration_count: u32,
        /// ArchiveStore: where backups are copied (needs --copy-option).
        #[arg(long)]
        target_datastore: Option<DataStoreType>,
        /// CopyOnExpiryOption (move when the backup expires in the source), ImmediateCopyOption
        /// or CustomCopyOption (needs --copy-after-duration).
        #[arg(long)]
        copy_option: Option<CopyOptionKind>,
        /// For CustomCopyOption: how long after the backup the copy is made (ISO 8601, such as P3M).
        #[arg(long)]
        copy_after_duration: Option<IsoDuration>,
    },
    /// Add a retention rule, or replace the lifecycles of an existing one.
    #[command(
        after_help = "Example:\n  pgvault backup-policy retention-rule set --lifecycles VaultLifeCycle.json --name Monthly --policy EditedOSSPolicy.json > AddedRetentionRulePolicy.json"
    )]
    Set {
        /// Default, Daily, Weekly, Monthly or Yearly (any existing rule may be changed).
        #[arg(long, short = 'n')]
        name: String,
        /// Lifecycle JSON files, as create-lifecycle prints them; a file may hold an array.
        #[arg(long, num_args = 1.., required = true)]
        lifecycles: Vec<PathBuf>,
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Remove a retention rule (never Default).
    #[command(
        after_help = "Example:\n  pgvault backup-policy retention-rule remove --name Monthly --policy AddedRetentionRulePolicy.json > policy.json"
    )]
    Remove {
        #[arg(long, short = 'n')]
        name: String,
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TagCommand {
    /// Create criteria that tag the first backup of a period: FirstOfDay, FirstOfWeek, FirstOfMonth, FirstOfYear, or AllBackup.
    #[command(
        after_help = "Example:\n  pgvault backup-policy tag create-absolute-criteria --absolute-criteria FirstOfMonth > tagCriteria.json"
    )]
    CreateAbsoluteCriteria {
        #[arg(long)]
        absolute_criteria: AbsoluteMarker,
    },
    /// Create criteria that tag backups taken on given days, weeks or months (each list that is given must match).
    #[command(
        after_help = "Example:\n  pgvault backup-policy tag create-generic-criteria --days-of-week Sunday Friday > tagCriteria.json"
    )]
    CreateGenericCriteria {
        /// Monday ... Sunday.
        #[arg(long, num_args = 1..)]
        days_of_week: Vec<String>,
        /// First, Second, Third, Fourth, Last.
        #[arg(long, num_args = 1..)]
        weeks_of_month: Vec<String>,
        /// January ... December.
        #[arg(long, num_args = 1..)]
        months_of_year: Vec<String>,
        /// 1 to 28, or Last.
        #[arg(long, num_args = 1..)]
        days_of_month: Vec<String>,
    },
    /// Add a tag to a policy's schedule, or replace the criteria of an existing one.
    #[command(
        after_help = "Example:\n  pgvault backup-policy tag set --criteria tagCriteria.json --name Monthly --policy AddedRetentionRulePolicy.json > AddedRetentionRuleAndTag.json"
    )]
    Set {
        /// Yearly, Monthly, Weekly or Daily: the retention rule of the same name keeps the tagged backups.
        #[arg(long, short = 'n')]
        name: String,
        /// Criteria JSON files, as create-absolute-criteria and create-generic-criteria print
        /// them; a file may hold an array. A backup matching any one of them gets the tag.
        #[arg(long, num_args = 1.., required = true)]
        criteria: Vec<PathBuf>,
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Remove a tag from a policy's schedule (never Default).
    #[command(
        after_help = "Example:\n  pgvault backup-policy tag remove --name Monthly --policy AddedRetentionRuleAndTag.json > policy.json"
    )]
    Remove {
        #[arg(long, short = 'n')]
        name: String,
        /// Policy JSON file (`-` for stdin, or inline JSON).
        #[arg(long)]
        policy: PathBuf,
    },
}

pub async fn run(cmd: PolicyCommand, format: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::GetDefaultPolicyTemplate { datasource_type } => {
            let t: DatasourceType = datasource_type.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{code}: {e}",
                    code = ErrorCode::UserErrorInvalidDatasourceType
                )
            })?;
            print(
                &serde_json::to_value(default_policy_template(t))?,
                Format::Json,
            )?;
        }
        PolicyCommand::Create {
            vault_name,
            scope,
            backup_policy_name,
            policy,
        } => {
            // Parsed and checked here, so that every problem is listed with its JSON path.
            let (label, text) = Inputs::default().text(&policy, "policy")?;
            let policy = BackupPolicy::from_json(&text).map_err(|errors| {
                anyhow::anyhow!(
                    "{code}: {label} is not a valid policy:\n{}",
                    lines(&errors),
                    code = ErrorCode::UserErrorInvalidPolicy
                )
            })?;
            let svc = open_service()?;
            scope.check_vault(&svc, &vault_name).await?;
            print(
                &svc.create_policy(&vault_name, &backup_policy_name, &policy)
                    .await
                    .map_err(coded)?,
                format,
            )?;
        }
        PolicyCommand::Show {
            vault_name,
            name,
            ids,
        } => {
            let svc = open_service()?;
            let targets = ids
                .targets(
                    &svc,
                    ResourceKind::Policy,
                    vault_name.as_deref(),
                    name.as_deref(),
                    None,
                )
                .await?;
            let mut out = Vec::new();
            for t in targets {
                let name = t.name.unwrap_or_default();
                out.push(svc.policy_json(&t.vault, &name).await.map_err(coded)?);
            }
            print(&one_or_list(out), format)?;
        }
        PolicyCommand::Delete {
            vault_name,
            name,
            ids,
            yes,
        } => {
            let svc = open_service()?;
            let targets = ids
                .targets(
                    &svc,
                    ResourceKind::Policy,
                    vault_name.as_deref(),
                    name.as_deref(),
                    None,
                )
                .await?;
            if !yes {
                let names: Vec<String> = targets
                    .iter()
                    .map(|t| t.name.clone().unwrap_or_default())
                    .collect();
                anyhow::bail!(
                    "{code}: deleting policy `{}` cannot be undone; add --yes to confirm",
                    names.join("`, `"),
                    code = ErrorCode::UserErrorConfirmationRequired
                );
            }
            for t in targets {
                let name = t.name.unwrap_or_default();
                svc.delete_policy(&t.vault, &name).await.map_err(coded)?;
                eprintln!("Policy `{name}` deleted from vault `{}`.", t.vault);
            }
        }
        PolicyCommand::List { vault_name, scope } => {
            let svc = open_service()?;
            scope.check_vault(&svc, &vault_name).await?;
            let (policies, unreadable) = svc.policies_json(&vault_name).await.map_err(coded)?;
            print(&Value::Array(policies), format)?;
            super::fail_on_unreadable("policies", unreadable)?;
        }
        PolicyCommand::Trigger(cmd) => trigger(cmd)?,
        PolicyCommand::RetentionRule(cmd) => retention_rule(cmd)?,
        PolicyCommand::Tag(cmd) => tag(cmd)?,
        PolicyCommand::Validate {
            policy,
            azure_compatible,
        } => return validate(&policy, azure_compatible),
        PolicyCommand::Simulate {
            policy,
            from,
            to,
            at,
            plot,
        } => {
            let (label, text) = Inputs::default().text(&policy, "policy")?;
            let policy = BackupPolicy::from_json(&text).map_err(|errors| {
                anyhow::anyhow!("{label} is not a valid policy:\n{}", lines(&errors))
            })?;
            super::simulate::run(&policy, from, to, at.unwrap_or(to), plot.as_deref(), format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trigger(cmd: TriggerCommand) -> anyhow::Result<()> {
    match cmd {
        TriggerCommand::CreateSchedule {
            interval_type,
            interval_count,
            schedule_days,
        } => {
            let schedule =
                policy_edit::create_schedule(interval_type, interval_count, &schedule_days)?;
            print_json(&schedule)
        }
        TriggerCommand::Set { policy, schedule } => {
            let mut inputs = Inputs::default();
            let mut edited = inputs.policy(&policy)?;
            policy_edit::set_trigger(&mut edited, schedule)?;
            print_json(&edited)
        }
    }
}

fn retention_rule(cmd: RetentionRuleCommand) -> anyhow::Result<()> {
    match cmd {
        RetentionRuleCommand::CreateLifecycle {
            source_datastore,
            retention_duration_type,
            retention_duration_count,
            target_datastore,
            copy_option,
            copy_after_duration,
        } => {
            let lifecycle = policy_edit::create_lifecycle(
                source_datastore,
                retention_duration_count,
                retention_duration_type,
                target_datastore,
                copy_option,
                copy_after_duration,
            )?;
            print_json(&lifecycle)
        }
        RetentionRuleCommand::Set {
            name,
            lifecycles,
            policy,
        } => {
            let mut inputs = Inputs::default();
            let mut edited = inputs.policy(&policy)?;
            let lifecycles: Vec<SourceLifeCycle> = inputs.items(&lifecycles, "lifecycle")?;
            policy_edit::set_retention_rule(&mut edited, &name, lifecycles)?;
            print_json(&edited)
        }
        RetentionRuleCommand::Remove { name, policy } => {
            let mut edited = Inputs::default().policy(&policy)?;
            policy_edit::remove_retention_rule(&mut edited, &name)?;
            print_json(&edited)
        }
    }
}

fn tag(cmd: TagCommand) -> anyhow::Result<()> {
    match cmd {
        TagCommand::CreateAbsoluteCriteria { absolute_criteria } => {
            print_json(&policy_edit::absolute_criteria(absolute_criteria))
        }
        TagCommand::CreateGenericCriteria {
            days_of_week,
            weeks_of_month,
            months_of_year,
            days_of_month,
        } => {
            let criteria = policy_edit::generic_criteria(
                &days_of_week,
                &weeks_of_month,
                &months_of_year,
                &days_of_month,
            )?;
            print_json(&criteria)
        }
        TagCommand::Set {
            name,
            criteria,
            policy,
        } => {
            let mut inputs = Inputs::default();
            let mut edited = inputs.policy(&policy)?;
            let criteria: Vec<ScheduleBasedBackupCriteria> = inputs.items(&criteria, "criteria")?;
            policy_edit::set_tag(&mut edited, &name, criteria)?;
            print_json(&edited)
        }
        TagCommand::Remove { name, policy } => {
            let mut edited = Inputs::default().policy(&policy)?;
            policy_edit::remove_tag(&mut edited, &name)?;
            print_json(&edited)
        }
    }
}

/// `validate`: the normalized policy on stdout, or each problem on its own stderr line
/// (path first) and exit status 1. Azure compatibility warnings go to stderr and leave the
/// exit status alone: the policy is valid for pgvault either way.
fn validate(path: &Path, azure_compatible: bool) -> anyhow::Result<ExitCode> {
    let (_, text) = Inputs::default().text(path, "policy")?;
    match BackupPolicy::from_json(&text) {
        Ok(policy) => {
            if azure_compatible {
                for warning in azure_compatibility_warnings(&policy) {
                    eprintln!("warning: {warning}");
                }
            }
            print_json(&policy)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            // One problem per line, each leading with its path, so the output greps and
            // diffs; the file name is in the command line that asked.
            for error in errors {
                eprintln!("{error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints pretty JSON like every command, but as a write that can fail, so that a closed
/// stdout (`| head`) becomes an error `main` ends quietly on rather than a panic.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = render(&serde_json::to_value(value)?, Format::Json);
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Reads the JSON arguments of one command: files, `-` for stdin (once per command, since
/// stdin can be read only once), or inline JSON, which the az CLI accepts in the same flags
/// (`--policy "$(cat policy.json)"`). A file of that name wins over inline JSON.
#[derive(Default)]
struct Inputs {
    stdin_read: bool,
}

impl Inputs {
    /// The text of one argument, with a label naming it for error messages.
    fn text(&mut self, arg: &Path, what: &str) -> anyhow::Result<(String, String)> {
        let limit = limits::POLICY_BYTES;
        let unreadable = |e: limits::InputError| {
            anyhow::anyhow!("{code}: {e}", code = ErrorCode::UserErrorInvalidInput)
        };
        if arg == Path::new("-") {
            anyhow::ensure!(
                !self.stdin_read,
                "stdin (`-`) can be read only once; put the other {what} in a file"
            );
            self.stdin_read = true;
            let text = limits::read_arg_text(arg, what, limit).map_err(unreadable)?;
            return Ok(("stdin".to_owned(), text));
        }
        let inline = arg
            .to_str()
            .map(|s| limits::strip_bom(s).trim_start())
            .filter(|s| s.starts_with('{') || s.starts_with('['));
        if let Some(json) = inline
            && !arg.exists()
        {
            return Ok((format!("the inline {what}"), json.to_owned()));
        }
        let text = limits::read_arg_text(arg, what, limit).map_err(unreadable)?;
        Ok((format!("`{}`", arg.display()), text))
    }

    /// A policy, parsed leniently and without the checks that span rules.
    fn policy(&mut self, arg: &Path) -> anyhow::Result<BackupPolicy> {
        let (label, text) = self.text(arg, "policy")?;
        BackupPolicy::parse_json(&text)
            .map_err(|errors| anyhow::anyhow!("{label} is not a valid policy:\n{}", lines(&errors)))
    }

    /// Every item of every file: a file holds one object or an array of them.
    fn items<T: DeserializeOwned>(
        &mut self,
        args: &[PathBuf],
        what: &str,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = Vec::new();
        for arg in args {
            let (label, text) = self.text(arg, what)?;
            let value: Value =
                serde_json::from_str(&text).with_context(|| format!("{label} is not JSON"))?;
            let (items, single) = match value {
                Value::Array(items) => (items, false),
                other => (vec![other], true),
            };
            anyhow::ensure!(
                !items.is_empty(),
                "{label} holds an empty array; it needs at least one {what}"
            );
            for (i, item) in items.into_iter().enumerate() {
                let parsed = from_lenient_value(item).map_err(|e| {
                    let which = if single {
                        String::new()
                    } else {
                        format!(" item {i}")
                    };
                    anyhow::anyhow!("{label}{which} is not a valid {what}: {e}")
                })?;
                all.push(parsed);
            }
        }
        Ok(all)
    }
}

fn lines(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}
