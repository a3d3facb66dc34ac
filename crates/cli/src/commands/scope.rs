//! az's resource arguments, shared by every command that maps to an `az dataprotection`
//! command: `-g/--resource-group` and `--subscription` ([`Scope`]), and on the commands az
//! gives `--ids` (show, update, delete and the actions on one resource) [`Ids`], one or more
//! full ids instead of the name arguments.
//!
//! As in az, `--ids` conflicts with `-g` and the name arguments (each command marks its
//! names `conflicts_with = "ids"`). A subscription must be the host's; `-g` on an existing
//! vault must be its group (else it is not found there, and the error names its group); an id
//! is parsed strictly ([`ArmId`]) and must be of the command's resource type.

use clap::Args;

use pgvault_host::service::Pgvault;
use pgvault_model::resource::{ArmId, ResourceGroup, ResourceKind, SubscriptionId};

use super::coded;

/// `-g/--resource-group` and `--subscription`.
#[derive(Args, Debug, Clone, Default)]
pub struct Scope {
    /// Name of the resource group: the vault's (a new vault's, default pgvault).
    #[arg(long = "resource-group", short = 'g', value_name = "GROUP")]
    pub resource_group: Option<String>,
    /// The subscription (a GUID): must be the one this host serves (PGVAULT_SUBSCRIPTION_ID;
    /// default 00000000-0000-0000-0000-000000000000).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
}

/// [`Scope`] and `--ids`.
#[derive(Args, Debug, Clone, Default)]
pub struct Ids {
    #[command(flatten)]
    pub scope: Scope,
    /// One or more full resource ids (as pgvault prints them) instead of the name arguments.
    #[arg(long, num_args = 1.., value_name = "ID", conflicts_with = "resource_group")]
    pub ids: Vec<String>,
}

/// One resource a command acts on: its vault, and its name and instance as the kind has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub vault: String,
    /// The policy, instance, recovery point or job (not for a vault).
    pub name: Option<String>,
    /// The instance a recovery point is under.
    pub instance: Option<String>,
}

fn parse_id(text: &str) -> anyhow::Result<ArmId> {
    ArmId::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))
}

impl Scope {
    /// `-g`, checked as ARM checks a group's name.
    pub fn group(&self) -> anyhow::Result<Option<ResourceGroup>> {
        self.resource_group
            .as_deref()
            .map(|g| ResourceGroup::parse(g).map_err(|e| anyhow::anyhow!("{}: {e}", e.code())))
            .transpose()
    }

    /// `--subscription`, a GUID.
    pub fn subscription(&self) -> anyhow::Result<Option<SubscriptionId>> {
        self.subscription
            .as_deref()
            .map(|s| SubscriptionId::parse(s).map_err(|e| anyhow::anyhow!("{}: {e}", e.code())))
            .transpose()
    }

    /// Checks `--subscription` alone (commands that name no existing vault).
    pub fn check_subscription(&self, svc: &Pgvault) -> anyhow::Result<()> {
        if let Some(s) = self.subscription()? {
            svc.check_subscription(&s).map_err(coded)?;
        }
        Ok(())
    }

    /// Checks that `vault` is where `-g` and `--subscription` say.
    pub async fn check_vault(&self, svc: &Pgvault, vault: &str) -> anyhow::Result<()> {
        let group = self.group()?;
        let subscription = self.subscription()?;
        svc.check_vault_scope(vault, subscription.as_ref(), group.as_ref())
            .await
            .map_err(coded)
    }
}

impl Ids {
    /// What the command acts on: each `--ids` id (of `kind`, in a vault of this host, where it
    /// says), else the vault and names given, checked against `-g` and `--subscription`.
    /// clap has already required the names when `--ids` is absent; a missing one is still
    /// refused here, never unwrapped.
    pub async fn targets(
        &self,
        svc: &Pgvault,
        kind: ResourceKind,
        vault: Option<&str>,
        name: Option<&str>,
        instance: Option<&str>,
    ) -> anyhow::Result<Vec<Target>> {
        if self.ids.is_empty() {
            let vault = vault.ok_or_else(|| anyhow::anyhow!("give --vault-name, or --ids"))?;
            self.scope.check_vault(svc, vault).await?;
            return Ok(vec![Target {
                vault: vault.to_owned(),
                name: name.map(str::to_owned),
                instance: instance.map(str::to_owned),
            }]);
        }
        if let Some(s) = self.scope.subscription()? {
            svc.check_subscription(&s).map_err(coded)?;
        }
        let mut out = Vec::with_capacity(self.ids.len());
        for text in &self.ids {
            let id = parse_id(text)?;
            if id.kind() != kind {
                return Err(anyhow::anyhow!(
                    "{}: `{text}` is the id of a {}; this command takes the id of a {}",
                    pgvault_model::code::ErrorCode::InvalidResourceId,
                    id.kind().noun(),
                    kind.noun()
                ));
            }
            svc.check_id(&id).await.map_err(coded)?;
            out.push(Target {
                vault: id.vault.name.clone(),
                name: (kind != ResourceKind::Vault).then(|| id.name().to_owned()),
                instance: id.instance().map(str::to_owned),
            });
        }
        Ok(out)
    }
}

/// What a command acting on `--ids` prints: the one answer, or a list of them when several
/// ids were given (as az prints a list for several `--ids`).
pub fn one_or_list(mut values: Vec<serde_json::Value>) -> serde_json::Value {
    if values.len() == 1 {
        values.remove(0)
    } else {
        serde_json::Value::Array(values)
    }
}
