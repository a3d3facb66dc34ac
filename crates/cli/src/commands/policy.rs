//! `pgvault backup-policy ...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use pgvault_core::model::policy::{BackupPolicy, DatasourceType};
use pgvault_core::model::templates::default_policy_template;

use super::{coded, open_service, read_json};
use crate::output::{Format, print};

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
        #[arg(long, short = 'v')]
        vault_name: String,
        #[arg(long, short = 'n', alias = "backup-policy-name")]
        name: String,
    },
    /// List a vault's policies.
    #[command(
        after_help = "Example:\n  pgvault backup-policy list --vault-name TestBkpVault -o table"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
}

pub async fn run(cmd: PolicyCommand, format: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::GetDefaultPolicyTemplate { datasource_type } => {
            let t: DatasourceType = datasource_type
                .parse()
                .map_err(|e| anyhow::anyhow!("UserErrorInvalidDatasourceType: {e}"))?;
            print(
                &serde_json::to_value(default_policy_template(t))?,
                Format::Json,
            );
        }
        PolicyCommand::Create {
            vault_name,
            backup_policy_name,
            policy,
        } => {
            let policy: BackupPolicy = read_json(&policy, "policy")?;
            let svc = open_service()?;
            print(
                &svc.create_policy(&vault_name, &backup_policy_name, &policy)
                    .await
                    .map_err(coded)?,
                format,
            );
        }
        PolicyCommand::Show { vault_name, name } => {
            let svc = open_service()?;
            let vault = svc.vault(&vault_name).await.map_err(coded)?;
            print(&vault.policy_json(&name).await.map_err(coded)?, format);
        }
        PolicyCommand::List { vault_name } => {
            let svc = open_service()?;
            let vault = svc.vault(&vault_name).await.map_err(coded)?;
            print(
                &Value::Array(vault.list_policies().await.map_err(coded)?),
                format,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
