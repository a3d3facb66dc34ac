//! `pgvault backup-instance ...`, including `restore ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::scope::{Ids, Scope, Target, one_or_list};
use pgvault_host::api::{DrillTarget, RecoveryPointChoice};
use pgvault_host::api::{
    FilesTarget, initialize_for_data_recovery, initialize_for_data_recovery_to_files,
};
use pgvault_host::api::{InitializeArgs, initialize_instance};
use pgvault_host::service::Pgvault;
use pgvault_model::code::ErrorCode;
use pgvault_model::instance::{
    BACKUPS_SUSPENDED, BackupInstanceRequest, PROTECTION_CONFIGURED, PROTECTION_STOPPED,
};
use pgvault_model::job::{Job, JobStatus};
use pgvault_model::resource::ResourceKind;
use pgvault_model::restore::{RestoreOptions, RestoreRequest};

use super::{coded, open_service, read_json};
use crate::output::{Format, print};

#[derive(Subcommand, Debug)]
pub enum InstanceCommand {
    /// Prepare a backup-instance request for a database (nothing is contacted yet; `create` validates).
    #[command(
        after_help = "Example:\n  pgvault backup-instance initialize --datasource-type AzureDatabaseForPostgreSQLFlexibleServer \\\n      --datasource-id postgres://db.example:5432/empdb11 --policy-id OssPolicy \\\n      --secret-store-type File --secret-store-uri file:///etc/pgvault/empdb11.secret > instance.json\n\nThe secret holds an ADO.NET connection string (Server=..;Database=..;User Id=..;Password=..;Ssl Mode=Require;)\nor a postgres:// URI; the datasource names the server and database, the secret supplies the credentials."
    )]
    Initialize {
        /// AzureDatabaseForPostgreSQLFlexibleServer or AzureDatabaseForPostgreSQL.
        #[arg(long)]
        datasource_type: String,
        /// The database: postgres://host[:port]/dbname (no credentials), or an Azure ARM id.
        #[arg(long)]
        datasource_id: String,
        /// The policy's name or id in the vault.
        #[arg(long)]
        policy_id: String,
        /// Where the credentials are: File, Environment or AzureKeyVault.
        #[arg(long)]
        secret_store_type: String,
        /// file:///path, env:NAME, or https://<vault>.vault.azure.net/secrets/<name>.
        #[arg(long)]
        secret_store_uri: String,
        /// Location label recorded on the instance.
        #[arg(long, short = 'l')]
        location: Option<String>,
    },
    /// Validate a backup-instance request against the database, then protect it.
    #[command(
        after_help = "Example:\n  pgvault backup-instance create --vault-name TestBkpVault --backup-instance instance.json"
    )]
    Create {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[command(flatten)]
        scope: Scope,
        /// The request `initialize` printed (`-` for stdin).
        #[arg(long)]
        backup_instance: PathBuf,
    },
    /// Show a backup instance.
    #[command(
        after_help = "Example:\n  pgvault backup-instance show --vault-name TestBkpVault --name <instance name>"
    )]
    Show {
        #[command(flatten)]
        target: InstanceArgs,
    },
    /// List a vault's backup instances.
    #[command(
        after_help = "Example:\n  pgvault backup-instance list --vault-name TestBkpVault -o table"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Back up now, keeping the recovery point under a retention rule of the policy.
    #[command(
        after_help = "Examples:\n  pgvault backup-instance adhoc-backup --vault-name TestBkpVault --name <instance name> --rule-name Default\n  pgvault backup-instance adhoc-backup --vault-name TestBkpVault --name <instance name> --rule-name Monthly\n  pgvault backup-instance adhoc-backup --vault-name TestBkpVault --name <instance name> --rule-name BackupWeekly --retention-tag-override Monthly"
    )]
    AdhocBackup {
        #[command(flatten)]
        target: InstanceArgs,
        /// The rule this backup is taken under: a retention rule (Default, Monthly, ...), which
        /// names its tag, or the backup rule (BackupWeekly), which takes the default tag unless
        /// --retention-tag-override names another.
        #[arg(long, default_value = "Default")]
        rule_name: String,
        /// With a backup rule as --rule-name: the retention tag to keep this backup under.
        #[arg(long)]
        retention_tag_override: Option<String>,
    },
    /// Restore a recovery point to a database or as files.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// Stop taking backups but keep every recovery point (Azure's SuspendBackups); resume with
    /// resume-protection.
    #[command(
        after_help = "Example:\n  pgvault backup-instance suspend-backup --vault-name TestBkpVault --name <instance name>"
    )]
    SuspendBackup {
        #[command(flatten)]
        target: InstanceArgs,
    },
    /// Stop protection and retain the recovery points (Azure's StopProtection); resume with
    /// resume-protection.
    #[command(
        after_help = "Example:\n  pgvault backup-instance stop-protection --vault-name TestBkpVault --name <instance name>"
    )]
    StopProtection {
        #[command(flatten)]
        target: InstanceArgs,
    },
    /// Stop protection and delete data: every recovery point (one DeleteRecoveryPoint job
    /// each), then the instance. The space returns at the next garbage collection.
    #[command(
        after_help = "Example:\n  pgvault backup-instance delete --vault-name TestBkpVault --name <instance name> --yes"
    )]
    Delete {
        #[command(flatten)]
        target: InstanceArgs,
        /// Confirm the deletion (required: deleted recovery points cannot be restored).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Soft-deleted backup instances (az's `deleted-backup-instance`): list, show, undelete.
    /// With soft delete on (`backup-vault update --soft-delete-state On`), `delete` keeps an
    /// instance and its recovery points for the vault's retention days, then the retention
    /// sweep purges them.
    #[command(
        subcommand,
        alias = "deleted-backup-instance",
        after_help = "Examples:\n  pgvault backup-instance deleted list --vault-name TestBkpVault\n  pgvault backup-instance deleted show --vault-name TestBkpVault --name <instance name>\n  pgvault backup-instance deleted undelete --vault-name TestBkpVault --name <instance name>"
    )]
    Deleted(DeletedCommand),
    /// Take backups again after suspend-backup or stop-protection (Azure's ResumeProtection).
    #[command(
        after_help = "Example:\n  pgvault backup-instance resume-protection --vault-name TestBkpVault --name <instance name>"
    )]
    ResumeProtection {
        #[command(flatten)]
        target: InstanceArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeletedCommand {
    /// List the vault's soft-deleted backup instances, each with its deletionInfo (when it was
    /// deleted and when it will be purged).
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// Show a soft-deleted backup instance.
    Show {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long, short = 'n', alias = "backup-instance-name")]
        name: String,
    },
    /// Bring a soft-deleted backup instance back with its recovery points. Its protection
    /// stays stopped, as in Azure: `resume-protection` takes backups again.
    Undelete {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long, short = 'n', alias = "backup-instance-name")]
        name: String,
    },
}

/// What to restore and how (pgvault's options, carried in the request as
/// `pgvaultRestoreOptions`).
#[derive(Args, Debug, Default)]
pub struct RestoreOptionArgs {
    /// Only these schemas (comma-separated or repeated): each schema and everything in it,
    /// with the functions and types they need from other schemas. A foreign key to a table
    /// outside them is left out, with a warning in the job.
    #[arg(long, value_delimiter = ',')]
    schemas: Vec<String>,
    /// Only these tables, `table` or `schema.table` (with --schemas: both): each with its
    /// data, owned sequences (serial and identity columns, at their values), defaults,
    /// indexes, constraints, triggers, comments and privileges, and the functions and types
    /// they need. A foreign key to a table not restored is left out, with a warning in the job.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// With --tables or --schemas: the tables without their indexes, constraints (keys,
    /// foreign keys), triggers, rules and policies; their data, owned sequences, defaults,
    /// comments and privileges still come.
    #[arg(long)]
    no_table_dependents: bool,
    /// Everything but these tables (`table` or `schema.table`) and what depends on them.
    #[arg(long, value_delimiter = ',')]
    exclude_tables: Vec<String>,
    /// Definitions only, no data.
    #[arg(long)]
    schema_only: bool,
    /// Data only, into existing definitions.
    #[arg(long)]
    data_only: bool,
    /// Restore owners and privileges: each object gets its owner where the role exists on the
    /// target and the restoring user may give objects to it (a superuser, or a member of the
    /// role); the others stay with the restoring user, and the job lists them (OwnersNotKept)
    /// with a warning. Default: objects belong to the restoring user, as in Azure.
    #[arg(long)]
    keep_owners: bool,
    /// Restore with N parallel jobs (pg_restore -j). The archive is first staged in a
    /// temporary file under TMPDIR, which must have room for it (checked before it starts).
    #[arg(long)]
    jobs: Option<u32>,
}

impl RestoreOptionArgs {
    fn options(self, format: Option<String>) -> RestoreOptions {
        RestoreOptions {
            schemas: self.schemas,
            tables: self.tables,
            no_table_dependents: self.no_table_dependents,
            exclude_tables: self.exclude_tables,
            schema_only: self.schema_only,
            data_only: self.data_only,
            keep_owners: self.keep_owners,
            jobs: self.jobs,
            format,
        }
    }
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The vault (optional: when given with the instance, the recovery point is checked).
    #[arg(long, short = 'v')]
    vault_name: Option<String>,
    #[arg(long)]
    backup_instance_name: Option<String>,
    /// The recovery point to restore (see `recovery-point list`).
    #[arg(long)]
    recovery_point_id: String,
    /// Where the recovery point is read from: VaultStore, or ArchiveStore for one that lives in
    /// the archive tier and was rehydrated (`recovery-point rehydrate`).
    #[arg(long, default_value = "VaultStore")]
    source_datastore: String,
}

#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// Prepare a request to restore into a new database on any server.
    #[command(
        after_help = "Example:\n  pgvault backup-instance restore initialize-for-data-recovery --vault-name TestBkpVault \\\n      --backup-instance-name <instance name> --recovery-point-id <id> \\\n      --target-database-url postgres://db2.example:5432/empdb11_restored \\\n      --secret-store-uri env:PGVAULT_RESTORE_SECRET > restore.json\n  ... --tables sales.orders            # one table, with its sequences, keys, indexes, triggers\n  ... --tables sales.orders --no-table-dependents   # its definition, sequences and data only\n  ... --schemas inventory --keep-owners            # one schema, with its owners where allowed\n  ... --exclude-tables audit.log --jobs 4\n\nThe target database must not exist; the target user needs CREATEDB. The restore goes into a\nstaging database renamed to the target when complete. --jobs stages the archive under TMPDIR\n(checked for room first)."
    )]
    InitializeForDataRecovery {
        #[command(flatten)]
        source: SourceArgs,
        /// The new database: postgres://host[:port]/dbname.
        #[arg(long, alias = "target-resource-id")]
        target_database_url: String,
        /// File, Environment or AzureKeyVault (inferred from the URI when omitted).
        #[arg(long)]
        secret_store_type: Option<String>,
        /// Credentials for the target server: file:///path, env:NAME or a Key Vault secret URI.
        #[arg(long)]
        secret_store_uri: String,
        #[command(flatten)]
        options: RestoreOptionArgs,
    },
    /// Prepare a request to write the recovery point as a custom-format dump file, for pg_restore by hand,
    /// into a Blob container or a folder.
    #[command(
        after_help = "Example:\n  pgvault backup-instance restore initialize-for-data-recovery-as-files --vault-name TestBkpVault \\\n      --backup-instance-name <instance name> --recovery-point-id <id> \\\n      --target-blob-container-url https://mystorage.blob.core.windows.net/restores \\\n      --target-file-name empdb11 > restore-files.json   # the blob restores/empdb11.dump\n  ... --target-directory /tmp/out                    # a folder instead\n  ... --format plain --tables sales.orders          # a .sql file of one table\n\nGive exactly one of --target-blob-container-url and --target-directory. The container must\nexist; its credentials come from the environment, as for a vault on Blob Storage\n(AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, or AZURE_STORAGE_USE_EMULATOR for Azurite).\nAn existing blob or file of the same name is refused (FailIfExists)."
    )]
    InitializeForDataRecoveryAsFiles {
        #[command(flatten)]
        source: SourceArgs,
        /// The Blob container the file is written to: https://<account>.blob.core.windows.net/<container>
        /// (or az://<account>/<container>); credentials come from the environment, never the URL.
        #[arg(long)]
        target_blob_container_url: Option<String>,
        /// The folder the dump file is written to (created if missing).
        #[arg(long)]
        target_directory: Option<String>,
        /// File (or blob) name without extension (default `<database>-<recovery point>`);
        /// `.dump` or `.sql` is added, as Azure's filePrefix.
        #[arg(long)]
        target_file_name: Option<String>,
        /// custom (the archive as stored, for pg_restore) or plain (a .sql file; the selection
        /// options below apply to it).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        options: RestoreOptionArgs,
    },
    /// Prove a recovery point restores: restore it into a scratch database on a server,
    /// compare what it holds with what the backup recorded (schemas, extensions, tables and
    /// exact row counts), drop the scratch database, and record a RestoreDrill job with the
    /// verdict and the time the restore took.
    #[command(
        after_help = "Example:\n  pgvault backup-instance restore drill --vault-name TestBkpVault --backup-instance-name <instance name> \\\n      --target-server-url postgres://drills.example:5432/postgres \\\n      --secret-store-type File --secret-store-uri file:///etc/pgvault/drills.secret\n\nThe scratch database is named pgvault_drill_<id> and is dropped afterwards, whatever the outcome;\nthe target user needs CREATEDB. The job fails with RestoreDrillMismatch when the restore differs.\nSee the evidence with `pgvault job list --operation RestoreDrill`."
    )]
    Drill {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long, short = 'n', alias = "name")]
        backup_instance_name: String,
        /// The recovery point to drill, or `latest` (see `recovery-point list`).
        #[arg(long, default_value = "latest")]
        recovery_point_id: RecoveryPointChoice,
        /// The server to restore to: postgres://host[:port]/anydb (the database is only where
        /// the drill connects first; the scratch database is created beside it).
        #[arg(long)]
        target_server_url: String,
        /// File, Environment or AzureKeyVault (inferred from the URI when omitted).
        #[arg(long)]
        secret_store_type: Option<String>,
        /// Credentials for the target server: file:///path, env:NAME or a Key Vault secret URI.
        #[arg(long)]
        secret_store_uri: String,
    },
    /// Run a restore request.
    #[command(
        after_help = "Example:\n  pgvault backup-instance restore trigger --vault-name TestBkpVault --backup-instance-name <instance name> \\\n      --restore-request-object restore.json"
    )]
    Trigger {
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
            alias = "name",
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        backup_instance_name: Option<String>,
        #[command(flatten)]
        ids: Ids,
        /// The request an initialize-for-* command printed (`-` for stdin).
        #[arg(long)]
        restore_request_object: PathBuf,
    },
}

/// On a terminal, a progress line for a restore of `total` bytes (bytes, rate, time left),
/// refreshed from `written`; nothing when stderr is not a terminal (logs, cron).
fn show_progress(
    total: u64,
    written: Arc<AtomicU64>,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || total == 0 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "restoring {bytes}/{total_bytes} ({percent}%), {binary_bytes_per_sec}, {eta} left",
        )
        .expect("the template is valid"),
    );
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            shown.set_position(written.load(Ordering::Relaxed));
        }
    });
    Some((bar, task))
}

/// Prints a finished job; a failed job is an error exit with its code and message.
pub async fn report_job(
    svc: &Pgvault,
    job: &Job,
    extra: Option<Value>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let mut v = svc.operation_json(job).await;
    if let Some(extra) = extra {
        v["properties"]["result"] = extra;
    }
    print(&v, format)?;
    if job.status() == JobStatus::Failed {
        let (code, message) = job
            .state
            .error()
            .map(|e| (e.code.as_str(), e.message.as_str()))
            .unwrap_or(("", ""));
        eprintln!("{code}: {message}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--source-datastore` as the request spells it.
fn datastore_name(source: &SourceArgs) -> anyhow::Result<String> {
    Ok(
        pgvault_host::api::source_datastore(&source.source_datastore)
            .map_err(coded)?
            .to_string(),
    )
}

/// Reads a request file (or stdin) the user wrote or an `initialize` command printed, bounded
/// as every request is.
fn read_request<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    read_json(path, what, pgvault_host::api::limits::REQUEST_BYTES)
}

/// What a request that is JSON but not the request wanted is called in its error.
fn request_error(path: &Path, what: &str) -> String {
    if path == Path::new("-") {
        format!("stdin is not a valid {what}")
    } else {
        format!("`{}` is not a valid {what}", path.display())
    }
}

/// Prints a request the `initialize-for-data-recovery*` commands made, as JSON, completed
/// with the source's datastore and the restore options the flags give.
fn print_restore_request(
    mut req: RestoreRequest,
    source: &SourceArgs,
    options: RestoreOptions,
) -> anyhow::Result<()> {
    req.source_data_store_type = datastore_name(source)?;
    req.pgvault_restore_options = options;
    print(&serde_json::to_value(req)?, Format::Json)?;
    Ok(())
}

async fn source_resource_id(source: &SourceArgs) -> anyhow::Result<Option<String>> {
    let datastore = pgvault_host::api::source_datastore(&source.source_datastore).map_err(coded)?;
    let (Some(vault), Some(instance)) = (&source.vault_name, &source.backup_instance_name) else {
        return Ok(None);
    };
    let svc = open_service()?;
    let id = svc
        .restore_source_id(vault, instance, &source.recovery_point_id, datastore)
        .await
        .map_err(coded)?;
    Ok(Some(id))
}

pub async fn run(cmd: InstanceCommand, format: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        InstanceCommand::Initialize {
            datasource_type,
            datasource_id,
            policy_id,
            secret_store_type,
            secret_store_uri,
            location,
        } => {
            let req = initialize_instance(&InitializeArgs {
                datasource_type,
                datasource_id,
                policy_id,
                secret_store_type,
                secret_store_uri,
                location,
            })
            .map_err(coded)?;
            print(&serde_json::to_value(req)?, Format::Json)?;
        }
        InstanceCommand::Create {
            vault_name,
            scope,
            backup_instance,
        } => {
            let what = "backup-instance request";
            let req = BackupInstanceRequest::from_value(read_request(&backup_instance, what)?)
                .with_context(|| request_error(&backup_instance, what))?;
            let svc = open_service()?;
            scope.check_vault(&svc, &vault_name).await?;
            print(&svc.protect(&vault_name, req).await.map_err(coded)?, format)?;
        }
        InstanceCommand::Show { target } => {
            let svc = open_service()?;
            let mut out = Vec::new();
            for t in target.instances(&svc).await? {
                out.push(svc.instance_json(&t.vault, &t.name).await.map_err(coded)?);
            }
            print(&one_or_list(out), format)?;
        }
        InstanceCommand::List { vault_name, scope } => {
            let svc = open_service()?;
            scope.check_vault(&svc, &vault_name).await?;
            let (list, unreadable) = svc.instances_json(&vault_name).await.map_err(coded)?;
            print(&Value::Array(list), format)?;
            super::fail_on_unreadable("backup instances", unreadable)?;
        }
        InstanceCommand::AdhocBackup {
            target,
            rule_name,
            retention_tag_override,
        } => {
            let svc = open_service()?;
            let t = one(target.instances(&svc).await?)?;
            let (job, manifest) = svc
                .adhoc_backup(
                    &t.vault,
                    &t.name,
                    &rule_name,
                    retention_tag_override.as_deref(),
                )
                .await
                .map_err(coded)?;
            let extra = manifest.map(|m| json!({ "recoveryPointId": m.recovery_point_id, "bytesRead": m.stats.bytes_read, "bytesStored": m.stats.bytes_stored }));
            return report_job(&svc, &job, extra, format).await;
        }
        InstanceCommand::Restore(r) => return restore(r, format).await,
        InstanceCommand::SuspendBackup { target } => {
            set_state(target, BACKUPS_SUSPENDED, format).await?;
        }
        InstanceCommand::StopProtection { target } => {
            set_state(target, PROTECTION_STOPPED, format).await?;
        }
        InstanceCommand::ResumeProtection { target } => {
            set_state(target, PROTECTION_CONFIGURED, format).await?;
        }
        InstanceCommand::Delete { target, yes } => {
            let svc = open_service()?;
            let targets = target.instances(&svc).await?;
            if !yes {
                let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                anyhow::bail!(
                    "{code}: deleting backup instance `{}` deletes all its recovery points and cannot be undone; add --yes to confirm",
                    names.join("`, `"),
                    code = ErrorCode::UserErrorConfirmationRequired
                );
            }
            let mut jobs = Vec::new();
            for t in targets {
                jobs.extend(
                    svc.delete_backup_instance(&t.vault, &t.name)
                        .await
                        .map_err(coded)?,
                );
            }
            print(&Value::Array(svc.jobs_json(&jobs).await), format)?;
        }
        InstanceCommand::Deleted(cmd) => {
            let svc = open_service()?;
            match cmd {
                DeletedCommand::List { vault_name } => {
                    let list = svc
                        .deleted_instances_json(&vault_name)
                        .await
                        .map_err(coded)?;
                    print(&Value::Array(list), format)?;
                }
                DeletedCommand::Show { vault_name, name } => {
                    let shown = svc
                        .deleted_instance_json(&vault_name, &name)
                        .await
                        .map_err(coded)?;
                    print(&shown, format)?;
                }
                DeletedCommand::Undelete { vault_name, name } => {
                    let job = svc
                        .undelete_backup_instance(&vault_name, &name)
                        .await
                        .map_err(coded)?;
                    if let Some(e) = job.state.error() {
                        anyhow::bail!("{}: {}", e.code, e.message);
                    }
                    let shown = svc.instance_json(&vault_name, &name).await.map_err(coded)?;
                    print(&shown, format)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_state(target: InstanceArgs, state: &str, format: Format) -> anyhow::Result<()> {
    let svc = open_service()?;
    let mut out = Vec::new();
    for t in target.instances(&svc).await? {
        out.push(
            svc.set_protection_state(&t.vault, &t.name, state)
                .await
                .map_err(coded)?,
        );
    }
    print(&one_or_list(out), format)?;
    Ok(())
}

/// The backup instances a command acts on: `--vault-name` and `--name` (one), or `--ids`
/// (several), as every az command on backup instances takes them.
#[derive(Args, Debug)]
pub struct InstanceArgs {
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
        alias = "backup-instance-name",
        required_unless_present = "ids",
        conflicts_with = "ids"
    )]
    name: Option<String>,
    #[command(flatten)]
    ids: Ids,
}

impl InstanceArgs {
    /// The instances named, checked against `-g` and `--subscription`.
    async fn instances(self, svc: &Pgvault) -> anyhow::Result<Vec<InstanceTarget>> {
        instances(svc, &self.ids, self.vault_name, self.name).await
    }
}

/// A backup instance a command acts on.
struct InstanceTarget {
    vault: String,
    name: String,
}

/// The backup instances `--ids`, or `--vault-name` and `--name`, name (checked against `-g`
/// and `--subscription`).
async fn instances(
    svc: &Pgvault,
    ids: &Ids,
    vault_name: Option<String>,
    name: Option<String>,
) -> anyhow::Result<Vec<InstanceTarget>> {
    let targets = ids
        .targets(
            svc,
            ResourceKind::Instance,
            vault_name.as_deref(),
            name.as_deref(),
            None,
        )
        .await?;
    targets
        .into_iter()
        .map(|Target { vault, name, .. }| {
            let name = name.ok_or_else(|| anyhow::anyhow!("give --name, or --ids"))?;
            Ok(InstanceTarget { vault, name })
        })
        .collect()
}

/// The one target of a command that runs one job and reports it (az runs it per id; pgvault
/// asks for one at a time so that the exit status is that job's).
fn one(mut targets: Vec<InstanceTarget>) -> anyhow::Result<InstanceTarget> {
    if targets.len() != 1 {
        anyhow::bail!(
            "{code}: this command runs one job: give one backup instance id to --ids",
            code = ErrorCode::UserErrorInvalidInput
        );
    }
    Ok(targets.remove(0))
}

async fn restore(cmd: RestoreCommand, format: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        RestoreCommand::InitializeForDataRecovery {
            source,
            target_database_url,
            secret_store_type,
            secret_store_uri,
            options,
        } => {
            let src = source_resource_id(&source).await?;
            let req = initialize_for_data_recovery(
                &source.recovery_point_id,
                &target_database_url,
                secret_store_type.as_deref(),
                &secret_store_uri,
                src,
            )
            .map_err(coded)?;
            print_restore_request(req, &source, options.options(None))?;
        }
        RestoreCommand::InitializeForDataRecoveryAsFiles {
            source,
            target_blob_container_url,
            target_directory,
            target_file_name,
            format,
            options,
        } => {
            let target = FilesTarget::choose(
                target_directory.as_deref(),
                target_blob_container_url.as_deref(),
            )
            .map_err(coded)?;
            let src = source_resource_id(&source).await?;
            let req = initialize_for_data_recovery_to_files(
                &source.recovery_point_id,
                &target,
                target_file_name.as_deref().unwrap_or_default(),
                src,
            )
            .map_err(coded)?;
            print_restore_request(req, &source, options.options(format))?;
        }
        RestoreCommand::Drill {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            target_server_url,
            secret_store_type,
            secret_store_uri,
        } => {
            let target = DrillTarget::parse(
                &target_server_url,
                secret_store_type.as_deref(),
                &secret_store_uri,
            )
            .map_err(|e| coded(e.into()))?;
            let svc = open_service()?;
            let (job, report) = svc
                .restore_drill(
                    &vault_name,
                    &backup_instance_name,
                    &recovery_point_id,
                    &target,
                )
                .await
                .map_err(coded)?;
            let report = report.map(|r| serde_json::to_value(r).expect("a report serializes"));
            return report_job(&svc, &job, report, format).await;
        }
        RestoreCommand::Trigger {
            vault_name,
            backup_instance_name,
            ids,
            restore_request_object,
        } => {
            let what = "restore request";
            let req = RestoreRequest::from_value(read_request(&restore_request_object, what)?)
                .with_context(|| request_error(&restore_request_object, what))?;
            let svc = open_service()?;
            let t = one(instances(&svc, &ids, vault_name, backup_instance_name).await?)?;
            let (vault_name, backup_instance_name) = (t.vault, t.name);
            let written = Arc::new(AtomicU64::new(0));
            let total = svc
                .recovery_point_length(&vault_name, &backup_instance_name, &req.recovery_point_id)
                .await;
            let progress = show_progress(total, written.clone());
            let result = svc
                .restore_observed(&vault_name, &backup_instance_name, &req, written)
                .await;
            if let Some((bar, task)) = progress {
                task.abort();
                bar.finish_and_clear();
            }
            let (job, outcome) = result.map_err(coded)?;
            return report_job(&svc, &job, outcome.map(|o| o.target), format).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
