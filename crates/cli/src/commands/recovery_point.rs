//! `pgvault recovery-point ...`

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::{coded, open_service};
use crate::output::{Format, print};

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
    },
    /// Show one recovery point, with what its backup recorded of the database's contents
    /// (schemas, extensions, tables and row counts) under `pgvaultContents`.
    #[command(
        after_help = "Example:\n  pgvault recovery-point show --vault-name TestBkpVault --backup-instance-name <instance name> --recovery-point-id <id>"
    )]
    Show {
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long)]
        backup_instance_name: String,
        #[arg(long)]
        recovery_point_id: String,
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
}

pub async fn run(cmd: RecoveryPointCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        RecoveryPointCommand::List {
            vault_name,
            backup_instance_name,
        } => {
            let vault = svc.vault(&vault_name).await.map_err(coded)?;
            vault.instance(&backup_instance_name).await.map_err(coded)?;
            let rps = vault
                .recovery_points(&backup_instance_name)
                .await
                .map_err(coded)?;
            print(
                &Value::Array(rps.iter().map(|m| vault.recovery_point_json(m)).collect()),
                format,
            );
        }
        RecoveryPointCommand::Show {
            vault_name,
            backup_instance_name,
            recovery_point_id,
        } => {
            let vault = svc.vault(&vault_name).await.map_err(coded)?;
            let m = vault
                .stored_point(&backup_instance_name, &recovery_point_id)
                .await
                .map_err(coded)?;
            print(&vault.recovery_point_detail_json(&m), format);
        }
        RecoveryPointCommand::Delete {
            vault_name,
            backup_instance_name,
            recovery_point_id,
            yes,
        } => {
            if !yes {
                anyhow::bail!(
                    "UserErrorConfirmationRequired: deleting recovery point `{recovery_point_id}` cannot be undone; add --yes to confirm"
                );
            }
            let job = svc
                .delete_recovery_point(&vault_name, &backup_instance_name, &recovery_point_id)
                .await
                .map_err(coded)?;
            print(&job.azure_json(), format);
            if let Some(e) = job.state.error() {
                eprintln!("{}: {}", e.code, e.message);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
