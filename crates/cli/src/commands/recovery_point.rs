//! `pgvault recovery-point ...`: list, show, delete and verify recovery points.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use pgvault_host::api::{PointSelection, PointVerification};
use pgvault_model::code::ErrorCode;

use super::instance::report_job;
use super::scope::{Ids, Scope, one_or_list};
use super::{coded, open_service};
use crate::output::{Format, line, print, table};
use pgvault_model::human;
use pgvault_model::resource::ResourceKind;

#[derive(Subcommand, Debug)]
pub enum DeletedPointCommand {
    /// The vault's soft-deleted recovery points, each with when it was deleted and when it
    /// will be purged.
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// Bring a soft-deleted recovery point back.
    Undelete {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long)]
        backup_instance_name: String,
        #[arg(long)]
        recovery_point_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RecoveryPointCommand {
    /// List a backup instance's recovery points, newest first.
    #[command(
        after_help = "Example:\n  pgvault recovery-point list --vault-name TestBkpVault --backup-instance-name <instance name> -o table"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long)]
        backup_instance_name: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Show one recovery point, with what its backup recorded of the database's contents
    /// (schemas, extensions, tables and row counts) under `pgvaultContents`.
    #[command(
        after_help = "Example:\n  pgvault recovery-point show --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id>"
    )]
    Show {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[arg(long, required_unless_present = "ids", conflicts_with = "ids")]
        backup_instance_name: Option<String>,
        #[arg(long, required_unless_present = "ids", conflicts_with = "ids")]
        recovery_point_id: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Copy a recovery point that lives only in the archive tier back to the vault tier for
    /// 10 to 30 days, as a Rehydrate job; then restore it with --source-datastore ArchiveStore.
    #[command(
        after_help = "Example:\n  pgvault recovery-point rehydrate --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id> --rehydration-duration 15\n  pgvault backup-instance restore initialize-for-data-recovery ... --source-datastore ArchiveStore"
    )]
    Rehydrate {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long)]
        backup_instance_name: String,
        #[arg(long)]
        recovery_point_id: String,
        /// Days the rehydrated copy is kept in the vault tier: 10 to 30 (`15`, `P15D` or `15D`).
        #[arg(long, value_parser = pgvault_model::duration::parse_days)]
        rehydration_duration: u32,
        /// Standard or High (Azure's rehydrate priority; a local archive tier has one speed).
        #[arg(long, default_value = "Standard")]
        rehydration_priority: String,
    },
    /// Delete a recovery point from every tier, as a DeleteRecoveryPoint job. Its data is
    /// removed at the next garbage collection.
    #[command(
        after_help = "Example:\n  pgvault recovery-point delete --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id> --yes"
    )]
    Delete {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long)]
        backup_instance_name: String,
        #[arg(long)]
        recovery_point_id: String,
        /// Confirm the deletion (required: a deleted recovery point cannot be restored).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Soft-deleted recovery points (with soft delete on, `delete` keeps a point for the
    /// vault's retention days): list them with their deletionInfo, or undelete one.
    #[command(
        subcommand,
        after_help = "Examples:\n  pgvault recovery-point deleted list --vault-name TestBkpVault\n  pgvault recovery-point deleted undelete --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id>"
    )]
    Deleted(DeletedPointCommand),
    /// Read recovery points back chunk by chunk, as a restore would, in every tier holding
    /// them, and say which are intact. For a damaged one, name every chunk that is missing (in
    /// no index, or its pack gone) or corrupt (wrong hash, undecodable) and the pack it was
    /// in. Exits non-zero unless every recovery point passed.
    #[command(after_help = "Examples:
  pgvault recovery-point verify --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id>
  pgvault recovery-point verify --vault-name TestBkpVault --all -o table

Each chunk is checked against its hash, the stream against the manifest's length and\nchunk-sequence digest, and the dump's table of contents is read as pg_restore would.")]
    #[command(group(clap::ArgGroup::new("which").required(true).args(["recovery_point_id", "all"])))]
    Verify {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// The backup instance (required with --recovery-point-id; with --all, only its
        /// recovery points).
        #[arg(long)]
        backup_instance_name: Option<String>,
        #[arg(long, requires = "backup_instance_name")]
        recovery_point_id: Option<String>,
        /// Every recovery point: of the instance when one is given, else of the vault.
        #[arg(long)]
        all: bool,
    },
}

/// Days as Azure writes them (`P15D`, `15D`) or a plain number.
pub async fn run(cmd: RecoveryPointCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        RecoveryPointCommand::List {
            vault_name,
            backup_instance_name,
            scope,
        } => {
            scope.check_vault(&svc, &vault_name).await?;
            // Damaged manifests are listed after the good points, as `Partial` with why.
            let points = svc
                .recovery_points_json(&vault_name, &backup_instance_name)
                .await
                .map_err(coded)?;
            print(&Value::Array(points), format)?;
        }
        RecoveryPointCommand::Show {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            ids,
        } => {
            let targets = ids
                .targets(
                    &svc,
                    ResourceKind::RecoveryPoint,
                    vault_name.as_deref(),
                    recovery_point_id.as_deref(),
                    backup_instance_name.as_deref(),
                )
                .await?;
            let mut out = Vec::new();
            for t in targets {
                let (Some(instance), Some(id)) = (t.instance, t.name) else {
                    anyhow::bail!("give --backup-instance-name and --recovery-point-id, or --ids");
                };
                out.push(
                    svc.recovery_point_json(&t.vault, &instance, &id)
                        .await
                        .map_err(coded)?,
                );
            }
            print(&one_or_list(out), format)?;
        }
        RecoveryPointCommand::Rehydrate {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            rehydration_duration,
            rehydration_priority,
        } => {
            let job = svc
                .rehydrate(
                    &vault_name,
                    &backup_instance_name,
                    &recovery_point_id,
                    rehydration_duration,
                    &rehydration_priority,
                )
                .await
                .map_err(coded)?;
            return report_job(&svc, &job, None, format).await;
        }
        RecoveryPointCommand::Delete {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            yes,
        } => {
            if !yes {
                anyhow::bail!(
                    "{code}: deleting recovery point `{recovery_point_id}` cannot be undone; add --yes to confirm",
                    code = ErrorCode::UserErrorConfirmationRequired
                );
            }
            let job = svc
                .delete_recovery_point(&vault_name, &backup_instance_name, &recovery_point_id)
                .await
                .map_err(coded)?;
            return report_job(&svc, &job, None, format).await;
        }
        RecoveryPointCommand::Deleted(DeletedPointCommand::List { vault_name }) => {
            let points = svc.deleted_points(&vault_name).await.map_err(coded)?;
            print(&serde_json::to_value(points)?, format)?;
        }
        RecoveryPointCommand::Deleted(DeletedPointCommand::Undelete {
            vault_name,
            backup_instance_name,
            recovery_point_id,
        }) => {
            svc.undelete_recovery_point(&vault_name, &backup_instance_name, &recovery_point_id)
                .await
                .map_err(coded)?;
            let shown = svc
                .recovery_point_json(&vault_name, &backup_instance_name, &recovery_point_id)
                .await
                .map_err(coded)?;
            print(&shown, format)?;
        }
        RecoveryPointCommand::Verify {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            all: _,
        } => {
            let selection = match (backup_instance_name, recovery_point_id) {
                (Some(instance), Some(recovery_point_id)) => PointSelection::One {
                    instance,
                    recovery_point_id,
                },
                (Some(instance), None) => PointSelection::Instance(instance),
                // clap requires the instance with an id.
                (None, _) => PointSelection::All,
            };
            let points = svc
                .verify_recovery_points(&vault_name, &selection)
                .await
                .map_err(coded)?;
            match format {
                Format::Json => print(&serde_json::to_value(&points)?, format)?,
                Format::Table => print_verification(&points)?,
            }
            let damaged = points.iter().filter(|p| !p.is_ok()).count();
            if damaged > 0 {
                eprintln!(
                    "{code}: {damaged} of {} recovery points failed verification",
                    points.len(),
                    code = ErrorCode::RecoveryPointDamaged
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per tier copy, then what is wrong with each damaged one.
fn print_verification(points: &[PointVerification]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = points
        .iter()
        .flat_map(|p| {
            p.data_stores.iter().map(|t| {
                vec![
                    p.backup_instance_name.clone(),
                    p.name.clone(),
                    p.recovery_point_time.map(human::time).unwrap_or_default(),
                    t.data_store_type.to_string(),
                    t.status.to_string(),
                    t.stream.chunks_verified.to_string(),
                    t.stream.missing_chunks.len().to_string(),
                    t.stream.corrupt_chunks.len().to_string(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return line("(none)");
    }
    line(&table(
        &[
            "Instance",
            "Recovery point",
            "Time",
            "Tier",
            "Status",
            "Chunks OK",
            "Missing",
            "Corrupt",
        ],
        &rows,
    ))?;
    for p in points.iter().filter(|p| !p.is_ok()) {
        for t in p.data_stores.iter().filter(|t| !t.stream.is_ok()) {
            line(&format!(
                "\n{}/{} ({}):",
                p.backup_instance_name, p.name, t.data_store_type
            ))?;
            for f in t
                .stream
                .missing_chunks
                .iter()
                .chain(&t.stream.corrupt_chunks)
            {
                let pack = f
                    .pack_id
                    .map(|p| format!("pack {p}"))
                    .unwrap_or_else(|| "no pack".into());
                let needed_by = f
                    .needed_by
                    .map(|d| format!(", base of {d}"))
                    .unwrap_or_default();
                line(&format!(
                    "  {:<12} {:<9} {} in {pack}{needed_by}: {}",
                    format!("{:?}", f.reason),
                    format!("{:?}", f.role),
                    f.chunk_id,
                    f.detail
                ))?;
            }
            for problem in &t.stream.problems {
                line(&format!("  {problem}"))?;
            }
        }
    }
    Ok(())
}
