//! Reads that are not jobs: a vault's Azure JSON, its recovery points, the names of its
//! resources. The CLI, the REPL and (with issue 14) the REST API read through these, so no
//! caller above the host opens a vault or reaches its store.

use serde_json::Value;

use pgvault_core::engine::{Error, Result};
use pgvault_core::model::policy::DataStoreType;
use pgvault_core::model::resource::ResourceGroup;

use crate::service::Pgvault;

impl Pgvault {
    /// `backup-vault show`: the vault's Azure resource JSON.
    pub async fn vault_json(&self, name: &str) -> Result<Value> {
        Ok(self.vault(name).await?.to_azure_json())
    }

    /// `backup-vault list [-g GROUP]`: every registered vault that opens (in `group` when
    /// given); one that does not open is left out with a warning naming it, so one
    /// unreachable vault does not hide the others.
    pub async fn vaults_json(&self, group: Option<&ResourceGroup>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for name in self.vault_names()? {
            match self.vault(&name).await {
                Ok(v) if group.is_some_and(|g| g != v.resource_group()) => {}
                Ok(v) => out.push(v.to_azure_json()),
                Err(e) => {
                    tracing::warn!(vault = %name, error = %e, "registered vault cannot be opened")
                }
            }
        }
        Ok(out)
    }

    /// `recovery-point list`: the instance's recovery points in every tier, then the ones
    /// whose manifest is damaged (as `Partial`, with why). Fails when the instance does not
    /// exist.
    pub async fn recovery_points_json(&self, vault: &str, instance: &str) -> Result<Vec<Value>> {
        let vault = self.vault(vault).await?;
        vault.instance(instance).await?;
        let (points, damaged) = vault.recovery_points_and_damage(instance).await?;
        Ok(points
            .iter()
            .map(|m| vault.recovery_point_json(m))
            .chain(damaged.iter().map(|d| vault.damaged_recovery_point_json(d)))
            .collect())
    }

    /// One page of an instance's recovery points, in the order of their ids, reading only
    /// that page's manifests (the REST API's list, which pages with `nextLink`); whether more
    /// follow. Fails when the instance does not exist.
    pub async fn recovery_points_page(
        &self,
        vault: &str,
        instance: &str,
        start: usize,
        count: usize,
    ) -> Result<(Vec<Value>, bool)> {
        let vault = self.vault(vault).await?;
        vault.instance(instance).await?;
        vault.recovery_points_page(instance, start, count).await
    }

    /// The bytes a vault's data takes in its vault tier and, when it has one, its archive
    /// tier.
    pub async fn vault_stored_bytes(&self, vault: &str) -> Result<(u64, Option<u64>)> {
        self.vault(vault).await?.stored_bytes().await
    }

    /// How many recovery points an instance has in the vault tier and in the archive tier
    /// (a point in both counts in both), from the listings alone: cheap for thousands.
    pub async fn recovery_point_counts(
        &self,
        vault: &str,
        instance: &str,
    ) -> Result<(usize, usize)> {
        let (in_vault, in_archive) = self
            .vault(vault)
            .await?
            .recovery_point_ids(instance)
            .await?;
        Ok((in_vault.len(), in_archive.len()))
    }

    /// `recovery-point show`: one recovery point, with what its backup recorded of the
    /// database's contents.
    pub async fn recovery_point_json(
        &self,
        vault: &str,
        instance: &str,
        id: &str,
    ) -> Result<Value> {
        let vault = self.vault(vault).await?;
        let point = vault.stored_point(instance, id).await?;
        Ok(vault.recovery_point_detail_json(&point))
    }

    /// The names of the backup instances and policies in `vault` (the REPL's completion);
    /// what cannot be listed is left out.
    pub async fn resource_names(&self, vault: &str) -> (Vec<String>, Vec<String>) {
        let Ok(vault) = self.vault(vault).await else {
            return (Vec::new(), Vec::new());
        };
        (
            vault.instance_names().await.unwrap_or_default(),
            vault.policy_names().await.unwrap_or_default(),
        )
    }

    /// `backup-instance show`: one backup instance as Azure's resource JSON.
    pub async fn instance_json(&self, vault: &str, name: &str) -> Result<Value> {
        let vault = self.vault(vault).await?;
        Ok(vault.instance_json(&vault.instance(name).await?))
    }

    /// `backup-instance list`: every instance that reads, and an error naming each file that
    /// does not.
    pub async fn instances_json(&self, vault: &str) -> Result<(Vec<Value>, Vec<Error>)> {
        let vault = self.vault(vault).await?;
        let (list, unreadable) = vault.read_instances().await?;
        Ok((
            list.iter().map(|i| vault.instance_json(i)).collect(),
            unreadable,
        ))
    }

    /// `backup-policy show`: one policy as Azure's resource JSON.
    pub async fn policy_json(&self, vault: &str, name: &str) -> Result<Value> {
        self.vault(vault).await?.policy_json(name).await
    }

    /// `backup-policy list`: every policy that reads, and an error naming each file that does
    /// not.
    pub async fn policies_json(&self, vault: &str) -> Result<(Vec<Value>, Vec<Error>)> {
        self.vault(vault).await?.read_policies().await
    }

    /// The length of a recovery point's stream, for a restore's progress; 0 when it cannot be
    /// read (the restore itself then says why).
    pub async fn recovery_point_length(&self, vault: &str, instance: &str, id: &str) -> u64 {
        match self.vault(vault).await {
            Ok(vault) => vault
                .stored_point(instance, id)
                .await
                .map(|p| p.manifest().stream.length)
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// The datasource a restore request's source names (`--backup-instance-name` of
    /// `initialize-for-data-recovery`), once its recovery point is known to be restorable from
    /// `source` at the host's time.
    pub async fn restore_source_id(
        &self,
        vault: &str,
        instance: &str,
        recovery_point_id: &str,
        source: DataStoreType,
    ) -> Result<String> {
        let vault = self.vault(vault).await?;
        vault
            .restorable_manifest(instance, recovery_point_id, source, self.now())
            .await
            .map_err(|e| {
                self.explain_missing_point(vault.name(), instance, recovery_point_id, e)
            })?;
        Ok(vault
            .instance(instance)
            .await?
            .properties
            .data_source_info
            .resource_id)
    }
}
