//! Where things are in Azure Resource Manager's terms: the host's subscription, each vault's
//! resource group, and the checks az's `--subscription`, `-g` and `--ids` (and the REST
//! API's paths) go through before an operation names a vault.
//!
//! A vault's group is in its `vault.json` and never changes, so the host remembers the group
//! of every vault it has opened: job JSON, which names a vault per job, then needs no open.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use pgvault_core::engine::Vault;
use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::job::Job;
use pgvault_core::model::resource::{ArmId, ResourceGroup, ResourceKind, SubscriptionId};

use crate::service::Pgvault;

/// The groups of the vaults a host has opened, by lower-cased vault name (names are unique
/// ignoring case).
#[derive(Debug, Default)]
pub(crate) struct GroupCache(Mutex<HashMap<String, ResourceGroup>>);

impl GroupCache {
    pub(crate) fn remember(&self, vault: &str, group: &ResourceGroup) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(vault.to_ascii_lowercase(), group.clone());
        }
    }

    fn get(&self, vault: &str) -> Option<ResourceGroup> {
        self.0
            .lock()
            .ok()?
            .get(&vault.to_ascii_lowercase())
            .cloned()
    }
}

impl Pgvault {
    /// The resource group `vault` is in (`UserErrorVaultNotFound` when no such vault).
    pub async fn vault_group(&self, vault: &str) -> Result<ResourceGroup> {
        if let Some(group) = self.groups().get(vault) {
            return Ok(group);
        }
        Ok(self.vault(vault).await?.resource_group().clone())
    }

    /// Every registered vault that opens, with its resource group, in name order (the REST
    /// API's lists per subscription and per group). One that does not open is left out with
    /// a warning, as `backup-vault list` leaves it out.
    pub async fn vaults_with_groups(&self) -> Result<Vec<(String, ResourceGroup)>> {
        let mut out = Vec::new();
        for name in self.vault_names()? {
            match self.vault(&name).await {
                Ok(v) => out.push((v.name().to_owned(), v.resource_group().clone())),
                Err(e) => {
                    tracing::warn!(vault = %name, error = %e, "registered vault cannot be opened")
                }
            }
        }
        Ok(out)
    }

    /// Refuses a subscription other than the host's: `--subscription` and the REST API's
    /// `{subscriptionId}` must name the one the host serves.
    pub fn check_subscription(&self, subscription: &SubscriptionId) -> Result<()> {
        if subscription == self.subscription_id() {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::SubscriptionNotFound,
            format!(
                "subscription `{subscription}` is not this host's: it serves subscription `{}` (PGVAULT_SUBSCRIPTION_ID)",
                self.subscription_id()
            ),
        ))
    }

    /// Checks that `vault` exists and, when given, is in `group` and the host's
    /// `subscription` (az's `-g` and `--subscription` on a command that names a vault).
    /// A vault in another group is not found there, as in ARM, and the error names the
    /// group it is in.
    pub async fn check_vault_scope(
        &self,
        vault: &str,
        subscription: Option<&SubscriptionId>,
        group: Option<&ResourceGroup>,
    ) -> Result<()> {
        if let Some(subscription) = subscription {
            self.check_subscription(subscription)?;
        }
        let actual = self.vault_group(vault).await?;
        match group {
            Some(group) if *group != actual => Err(Error::new(
                ErrorCode::UserErrorVaultNotFound,
                format!(
                    "vault `{vault}` is not in resource group `{group}`: it is in resource group `{actual}`; give -g {actual} or leave -g out"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks that a parsed id names a vault of this host where it says (subscription,
    /// group, vault), as [`Pgvault::check_vault_scope`] does for `-g` and `--subscription`.
    pub async fn check_id(&self, id: &ArmId) -> Result<()> {
        self.check_vault_scope(
            &id.vault.name,
            Some(&id.vault.subscription),
            Some(&id.vault.resource_group),
        )
        .await
    }

    /// A job as Azure's JSON, under its vault's id in the host's subscription (a job of a
    /// vault that no longer opens is shown in group `pgvault`).
    pub async fn job_json(&self, job: &Job) -> Value {
        let group = match job.vault() {
            Some(vault) => self.vault_group(vault).await.unwrap_or_default(),
            None => ResourceGroup::default(),
        };
        job.azure_json(self.subscription_id(), &group)
    }

    /// [`Pgvault::job_json`] of each job, looking each vault's group up once.
    pub async fn jobs_json(&self, jobs: &[Job]) -> Vec<Value> {
        let mut groups: HashMap<String, ResourceGroup> = HashMap::new();
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let group = match job.vault() {
                Some(vault) => match groups.get(&vault.to_ascii_lowercase()) {
                    Some(group) => group.clone(),
                    None => {
                        let group = self.vault_group(vault).await.unwrap_or_default();
                        groups.insert(vault.to_ascii_lowercase(), group.clone());
                        group
                    }
                },
                None => ResourceGroup::default(),
            };
            out.push(job.azure_json(self.subscription_id(), &group));
        }
        out
    }
}

/// The recovery point a restore request's `recoveryPointId` names in `vault`'s `instance`: a
/// bare id, or the full id of one of that instance's recovery points. A full id under another
/// vault (group, subscription) or instance is refused, never rebound to this one.
pub(crate) fn recovery_point_of(vault: &Vault, instance: &str, input: &str) -> Result<String> {
    let this = vault.arm();
    let name = this
        .child_name(input, ResourceKind::RecoveryPoint, "recoveryPointId")
        .map_err(|e| Error::new(e.code(), e.to_string()))?;
    if input.contains('/') {
        let id = ArmId::parse(input).map_err(|e| Error::new(e.code(), e.to_string()))?;
        if !id
            .instance()
            .is_some_and(|i| i.eq_ignore_ascii_case(instance))
        {
            return Err(Error::new(
                ErrorCode::UserErrorResourceInAnotherVault,
                format!(
                    "recoveryPointId `{input}` is a recovery point of another backup instance; this restore is of `{}`: give a bare id or an id under it",
                    this.instance_id(instance)
                ),
            ));
        }
    }
    Ok(name)
}
