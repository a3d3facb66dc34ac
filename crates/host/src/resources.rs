//! Changes to resources that the REST API makes besides the CLI's: validating a backup
//! instance without protecting it, deleting a policy, deleting a vault.

use pgvault_core::engine::protect::{check_new_instance, validate_new_instance};
use std::collections::BTreeMap;

use pgvault_core::engine::restore::validate_restore;
use pgvault_core::engine::vault::StorageSetting;
use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::instance::BackupInstanceRequest;
use pgvault_core::model::restore::RestoreRequest;

use crate::service::Pgvault;

impl Pgvault {
    /// `validateForBackup`: what protecting `request` would check, database included; nothing
    /// is stored and no job is recorded.
    pub async fn validate_for_backup(
        &self,
        vault: &str,
        request: &BackupInstanceRequest,
    ) -> Result<()> {
        validate_new_instance(&self.vault(vault).await?, request).await
    }

    /// The checks of a new backup instance that need no database (name, type, policy, not
    /// protected already), for an answer before the long-running part starts.
    pub async fn check_new_instance(
        &self,
        vault: &str,
        request: &BackupInstanceRequest,
    ) -> Result<()> {
        check_new_instance(&self.vault(vault).await?, request)
            .await
            .map(|_| ())
    }

    /// `validateRestore`: what restoring `request` would check, at the host's time; nothing
    /// is written and no job is recorded.
    pub async fn validate_restore(
        &self,
        vault: &str,
        instance: &str,
        request: &RestoreRequest,
    ) -> Result<()> {
        let vault = self.vault(vault).await?;
        validate_restore(&vault, instance, request, self.now())
            .await
            .map_err(|e| {
                self.explain_missing_point(vault.name(), instance, &request.recovery_point_id, e)
            })
    }

    /// What Azure's REST API changes of a vault resource (PUT on an existing vault, PATCH):
    /// its `location`, `tags` and `properties.storageSettings`, each only when given; returns
    /// the vault's JSON.
    pub async fn set_vault_resource(
        &self,
        name: &str,
        location: Option<String>,
        tags: Option<BTreeMap<String, String>>,
        storage_settings: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let settings = storage_settings
            .map(serde_json::from_value::<Vec<StorageSetting>>)
            .transpose()
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidRequestContent,
                    format!(
                        "properties.storageSettings is not a list of {{datastoreType, type}}: {e}"
                    ),
                )
            })?;
        let mut vault = self.vault(name).await?;
        vault
            .set_resource_properties(location, tags, settings)
            .await?;
        Ok(vault.to_azure_json())
    }

    /// `backup-policy delete`: a policy no instance uses.
    pub async fn delete_policy(&self, vault: &str, name: &str) -> Result<()> {
        self.vault(vault).await?.delete_policy(name).await
    }

    /// `backup-vault delete`: a vault with no backup instances left is removed from the home's
    /// registry, and its folder is removed when it is the home's own (`vaults/<name>`); a vault
    /// elsewhere (a folder or container the user chose) keeps its files, as its creator may
    /// still want them.
    pub async fn delete_vault(&self, name: &str) -> Result<()> {
        let vault = self.vault(name).await?;
        let (instances, unreadable) = vault.read_instances().await?;
        if !instances.is_empty() || !unreadable.is_empty() {
            let mut names: Vec<String> = instances.into_iter().map(|i| i.name).collect();
            if !unreadable.is_empty() {
                names.push(format!("{} unreadable", unreadable.len()));
            }
            return Err(Error::new(
                ErrorCode::UserErrorVaultNotEmpty,
                format!(
                    "vault `{}` still has backup instances ({}); delete them first",
                    vault.name(),
                    names.join(", ")
                ),
            ));
        }
        // As Azure: soft-deleted data keeps the vault until it is purged (a home vault's folder
        // would go with it).
        let soft = vault.deleted_instances().await?.len() + vault.deleted_points().await?.len();
        if soft > 0 {
            return Err(Error::new(
                ErrorCode::UserErrorVaultHasSoftDeletedItems,
                format!(
                    "vault `{}` holds {soft} soft-deleted backup instance(s) or recovery point(s) \
                     (`pgvault backup-instance deleted list`); undelete them or wait for their purge",
                    vault.name()
                ),
            ));
        }
        let vault_name = vault.name().to_owned();
        drop(vault);
        let mut registry = self.home().registry()?;
        let Some(url) = registry.vaults.remove(&vault_name) else {
            return Ok(());
        };
        self.home().save_registry(&registry)?;
        self.groups().forget(&vault_name);
        let own = self.home().default_vault_dir(&vault_name);
        if url == format!("file://{}", own.display()) {
            if let Err(e) = std::fs::remove_dir_all(&own) {
                tracing::warn!(vault = %vault_name, folder = %own.display(), error = %e,
                    "the deleted vault's folder could not be removed; remove it by hand");
            }
        } else {
            tracing::info!(vault = %vault_name, "the deleted vault's storage was left in place");
        }
        Ok(())
    }
}
