//! `pgvault backup-vault key`: the keys that open an encrypted vault. Each is a *key slot*:
//! the vault's data key wrapped by one key (a passphrase or a 256-bit key from `env:` or
//! `file:`, or an Azure Key Vault key), any of which opens the vault alone. Adding, rotating
//! or removing one rewrites `vault.json` only, never data.

use std::process::ExitCode;

use clap::Subcommand;

use pgvault_host::service::Pgvault;

use super::coded;
use crate::output::{Format, print};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a key that opens the vault. The vault is opened with one of its present keys
    /// first, so whoever adds a key holds one.
    #[command(
        after_help = "Examples:\n  pgvault backup-vault key add --vault-name TestBkpVault --key-uri file:/etc/pgvault/vault.key\n  pgvault backup-vault key add --vault-name TestBkpVault --key-uri https://contoso-kv.vault.azure.net/keys/pgvault-kek\n\nA file or variable holding 32 random bytes (raw, 64 hex digits or base64) is a key;\nanything else is a passphrase (12 characters or more), stretched with argon2id."
    )]
    Add {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// env:NAME, file:PATH, or https://<vault>.vault.azure.net/keys/<name>[/<version>].
        #[arg(long)]
        key_uri: String,
    },
    /// List the vault's key slots: id, kind, reference and when each was made (never a key).
    #[command(
        after_help = "Example:\n  pgvault backup-vault key list --vault-name TestBkpVault -o table"
    )]
    List {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// Wrap the data key again with the key a slot names: after changing the passphrase in its
    /// variable or file, or to move to a Key Vault key's newest version. The old wrapping is
    /// replaced once the new one is made. No data is rewritten.
    #[command(
        after_help = "Example:\n  PGVAULT_PASSPHRASE_OLD=... pgvault backup-vault key add --vault-name V --key-uri env:PGVAULT_PASSPHRASE\n\nTo change a passphrase: add a slot with the new one, open with it, then remove the old slot;\nor set the new passphrase where the slot's reference points and run `key rotate` while\nanother slot still opens the vault."
    )]
    Rotate {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// The slot's id (as `key list` prints it) or its reference.
        #[arg(long)]
        key_id: String,
    },
    /// Remove a key slot: that key no longer opens the vault. The last slot is never removed.
    #[command(
        after_help = "Example:\n  pgvault backup-vault key remove --vault-name TestBkpVault --key-id 3f2a9c1e --yes"
    )]
    Remove {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// The slot's id (as `key list` prints it) or its reference.
        #[arg(long)]
        key_id: String,
        /// Confirm: whoever holds only that key can no longer open the vault.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub async fn run(svc: Pgvault, cmd: KeyCommand, format: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Add {
            vault_name,
            key_uri,
        } => {
            let slot = svc
                .add_vault_key(&vault_name, &key_uri)
                .await
                .map_err(coded)?;
            print(&slot, format)?;
        }
        KeyCommand::List { vault_name } => {
            let slots = svc.vault_keys(&vault_name).await.map_err(coded)?;
            print(&serde_json::Value::Array(slots), format)?;
        }
        KeyCommand::Rotate { vault_name, key_id } => {
            let slot = svc
                .rotate_vault_key(&vault_name, &key_id)
                .await
                .map_err(coded)?;
            print(&slot, format)?;
        }
        KeyCommand::Remove {
            vault_name,
            key_id,
            yes,
        } => {
            if !yes {
                anyhow::bail!(
                    "{code}: after removing key slot `{key_id}` its key no longer opens vault `{vault_name}`; add --yes to confirm",
                    code = pgvault_model::code::ErrorCode::UserErrorConfirmationRequired
                );
            }
            let slot = svc
                .remove_vault_key(&vault_name, &key_id)
                .await
                .map_err(coded)?;
            print(&slot, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
