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

    /// Forgets a deleted vault's group (a vault of the same name may be made in another).
    pub(crate) fn forget(&self, vault: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&vault.to_ascii_lowercase());
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

    /// What an operation that started `job` answers: [`Pgvault::job_json`] with Azure's
    /// `jobId` and `objectType` at the top level ([`Job::operation_json`]).
    pub async fn operation_json(&self, job: &Job) -> Value {
        let group = match job.vault() {
            Some(vault) => self.vault_group(vault).await.unwrap_or_default(),
            None => ResourceGroup::default(),
        };
        job.operation_json(self.subscription_id(), &group)
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_core::engine::home::Home;
    use pgvault_core::model::job::{NewJob, Operation};

    const SUB: &str = "04cf684a-d41f-4550-9f70-7708a3a2283b";

    async fn service(dir: &std::path::Path) -> Pgvault {
        let home =
            Home::at(dir.join("home")).with_subscription_id(SubscriptionId::parse(SUB).unwrap());
        let svc = Pgvault::open(home).unwrap();
        for (name, group) in [("A", "Sales"), ("B", "pgvault")] {
            let url = format!("file://{}", dir.join(name).display());
            let group = ResourceGroup::parse(group).unwrap();
            svc.create_vault(name, &group, Some(&url)).await.unwrap();
        }
        svc
    }

    /// What the REST layer asks: each vault's group, and the vaults with their groups.
    #[tokio::test]
    async fn vaults_and_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path()).await;
        assert_eq!(svc.subscription_id().as_str(), SUB);
        assert_eq!(svc.vault_group("a").await.unwrap().as_str(), "Sales");
        let listed: Vec<(String, String)> = svc
            .vaults_with_groups()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, g)| (n, g.to_string()))
            .collect();
        assert_eq!(
            listed,
            [
                ("A".to_owned(), "Sales".to_owned()),
                ("B".into(), "pgvault".into())
            ]
        );
        let err = svc.vault_group("C").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::UserErrorVaultNotFound);

        // A second host on the same home finds the group in vault.json, not in a cache.
        let again = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        assert_eq!(again.vault_group("A").await.unwrap().as_str(), "Sales");
        assert_eq!(
            again
                .vaults_json(Some(&ResourceGroup::parse("SALES").unwrap()))
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn scope_checks_name_what_is_right() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path()).await;
        let sales = ResourceGroup::parse("sales").unwrap();
        let sub = SubscriptionId::parse(SUB).unwrap();
        svc.check_vault_scope("A", Some(&sub), Some(&sales))
            .await
            .unwrap();
        let err = svc
            .check_vault_scope("B", None, Some(&sales))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UserErrorVaultNotFound);
        assert!(err.message.contains("resource group `pgvault`"), "{err:?}");
        let other = SubscriptionId::default();
        let err = svc
            .check_vault_scope("A", Some(&other), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SubscriptionNotFound);
        assert!(err.message.contains(SUB), "{err:?}");
        let id = ArmId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/Sales/providers/Microsoft.DataProtection/backupVaults/B"
        ))
        .unwrap();
        assert_eq!(
            svc.check_id(&id).await.unwrap_err().code,
            ErrorCode::UserErrorVaultNotFound
        );
    }

    /// A job's ids are under its vault's group in the host's subscription; a job on no vault
    /// under the subscription alone.
    #[tokio::test]
    async fn job_json_is_under_the_vault_group() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path()).await;
        let owner = crate::history::current_owner();
        let now = svc.now();
        let mut new = NewJob::new(Operation::OnDemandBackup, "A", now, owner.clone());
        new.backup_instance_name = Some("db".into());
        let jobs = [
            Job::start(&new),
            Job::start(&NewJob::script_run("/s/x.rhai", now, owner)),
        ];
        let json = svc.jobs_json(&jobs).await;
        let base = format!(
            "/subscriptions/{SUB}/resourceGroups/Sales/providers/Microsoft.DataProtection/backupVaults/A"
        );
        assert!(
            json[0]["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{base}/backupJobs/"))
        );
        assert_eq!(
            json[0]["properties"]["backupInstanceId"],
            format!("{base}/backupInstances/db")
        );
        assert!(json[1]["id"].as_str().unwrap().starts_with(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupJobs/"
        )));
        assert_eq!(svc.job_json(&jobs[0]).await, json[0]);
    }
}
