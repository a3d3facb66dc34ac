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
    /// Show one recovery point.
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
            print(&vault.recovery_point_json(&m), format);
        }
    }
    Ok(ExitCode::SUCCESS)
}
