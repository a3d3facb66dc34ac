//! `pgvault backup-vault ...`

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::{coded, open_service};
use crate::output::{Format, print};

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Create a backup vault: a folder (or, later, a Blob container) that holds policies, instances and recovery points.
    #[command(
        after_help = "Example:\n  pgvault backup-vault create --vault-name TestBkpVault --storage-url file:///var/backups/pgvault\n\nWithout --storage-url the vault lives under $PGVAULT_HOME/vaults/<name>."
    )]
    Create {
        /// Name of the vault.
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Where the vault's data lives: file:///absolute/path (created if missing).
        #[arg(long)]
        storage_url: Option<String>,
        /// Average chunk size in KiB (4 to 1024), fixed for the vault's life. Smaller chunks
        /// store less after scattered row updates but need a larger index; the default was
        /// chosen with the benchmark (see README).
        #[arg(long)]
        chunk_size_kib: Option<u32>,
        /// Where the archive tier lives: a second location (file:///absolute/path), holding
        /// the recovery points a policy moves or copies to ArchiveStore.
        #[arg(long)]
        archive_storage_url: Option<String>,
    },
    /// Change a vault: give it an archive tier.
    #[command(
        after_help = "Example:\n  pgvault backup-vault update --vault-name TestBkpVault --archive-storage-url file:///mnt/archive/pgvault"
    )]
    Update {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Where the archive tier lives (file:///absolute/path). Set once: an archive tier
        /// holding recovery points is not moved.
        #[arg(long)]
        archive_storage_url: String,
    },
    /// Remove the data no recovery point references any more, now (the retention sweep does
    /// it too). Waits for nothing: when a backup or restore holds the vault it says so.
    #[command(after_help = "Example:\n  pgvault backup-vault gc --vault-name TestBkpVault")]
    Gc {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// Show a vault.
    #[command(after_help = "Example:\n  pgvault backup-vault show --vault-name TestBkpVault")]
    Show {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// List the vaults registered in PGVAULT_HOME.
    #[command(after_help = "Example:\n  pgvault backup-vault list -o table")]
    List,
}

pub async fn run(cmd: VaultCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        VaultCommand::Create {
            vault_name,
            storage_url,
            chunk_size_kib,
            archive_storage_url,
        } => {
            let chunk_avg = chunk_size_kib.map(|k| k.saturating_mul(1024));
            let vault = svc.create_vault_with(&vault_name, storage_url.as_deref(), chunk_avg);
            let mut vault = vault.await.map_err(coded)?;
            if let Some(url) = archive_storage_url {
                vault = svc
                    .set_archive_storage(&vault_name, &url)
                    .await
                    .map_err(coded)?;
            }
            print(&vault, format)
        }
        VaultCommand::Update {
            vault_name,
            archive_storage_url,
        } => print(
            &svc.set_archive_storage(&vault_name, &archive_storage_url)
                .await
                .map_err(coded)?,
            format,
        ),
        VaultCommand::Gc { vault_name } => {
            let tiers = svc
                .collect_vault_garbage(&vault_name)
                .await
                .map_err(coded)?;
            let failed = tiers.iter().any(|t| t.outcome.is_err());
            print(&serde_json::to_value(&tiers)?, format);
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VaultCommand::Show { vault_name } => print(
            &svc.vault(&vault_name).await.map_err(coded)?.to_azure_json(),
            format,
        ),
        VaultCommand::List => {
            let mut out = Vec::new();
            for name in svc.vault_names().map_err(coded)? {
                match svc.vault(&name).await {
                    Ok(v) => out.push(v.to_azure_json()),
                    Err(e) => {
                        tracing::warn!(vault = %name, error = %e, "registered vault cannot be opened")
                    }
                }
            }
            print(&Value::Array(out), format)
        }
    }
    Ok(ExitCode::SUCCESS)
}
