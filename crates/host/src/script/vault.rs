//! Rhai bindings for vaults: `new_vault`, `vault`, `vaults`, and the `Vault` type's methods
//! (`create_policy`, `policy`, `policies`, `protect`, `instances`, `recovery_points`).

use rhai::{Dynamic, Engine, Map};

use super::{RhaiResult, ScriptContext, coded, fail, from_dynamic, to_dynamic};
use pgvault_core::engine::protect::instance_target;
use pgvault_core::model::instance::BackupInstanceRequest;
use pgvault_core::model::policy::BackupPolicy;
use pgvault_core::model::resource::ResourceGroup;

/// A vault by name; every method looks it up again, so a script sees the vault as it is.
#[derive(Clone, Debug)]
pub struct VaultRef {
    pub name: String,
}

impl std::fmt::Display for VaultRef {
    /// The vault's name: what `print(v)` and `"${v}"` show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// How a vault reads inside an array or a map (`print(vaults())`, `debug(v)`): the call that
/// gives it back, `vault("TestBkpVault")`, so it cannot be taken for a plain string.
pub(super) fn vault_debug(v: &VaultRef) -> String {
    format!("vault({:?})", v.name)
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    engine.register_type_with_name::<VaultRef>("Vault");
    engine.register_get("name", |v: &mut VaultRef| v.name.clone());
    // Rhai's display hooks: without them a vault prints as its Rust type's path.
    engine.register_fn("to_string", |v: &mut VaultRef| v.to_string());
    engine.register_fn("to_debug", |v: &mut VaultRef| vault_debug(v));

    let c = ctx.clone();
    engine.register_fn(
        "new_vault",
        move |name: &str, options: Map| -> RhaiResult<VaultRef> {
            let text = |key: &str| -> RhaiResult<Option<String>> {
                match options.get(key) {
                    Some(u) if !u.is_unit() => u
                        .clone()
                        .into_string()
                        .map(Some)
                        .map_err(|t| fail(format!("{key} must be a string, not {t}"))),
                    _ => Ok(None),
                }
            };
            let url = text("storage_url")?;
            let group = match text("resource_group")? {
                Some(g) => ResourceGroup::parse(&g).map_err(|e| {
                    coded(pgvault_core::engine::Error::new(e.code(), e.to_string()))
                })?,
                None => ResourceGroup::default(),
            };
            let key = text("encryption_key_uri")?;
            c.check_new_vault()?;
            c.block_on(c.pgvault.create_vault_with(
                name,
                &group,
                url.as_deref(),
                None,
                key.as_deref(),
            ))
            .map_err(coded)?;
            Ok(VaultRef {
                name: name.to_string(),
            })
        },
    );
    let c = ctx.clone();
    engine.register_fn("new_vault", move |name: &str| -> RhaiResult<VaultRef> {
        c.check_new_vault()?;
        c.block_on(
            c.pgvault
                .create_vault(name, &ResourceGroup::default(), None),
        )
        .map_err(coded)?;
        Ok(VaultRef {
            name: name.to_string(),
        })
    });
    let c = ctx.clone();
    engine.register_fn("vault", move |name: &str| -> RhaiResult<VaultRef> {
        let v = c.block_on(c.pgvault.vault(name)).map_err(coded)?;
        Ok(VaultRef {
            name: v.name().to_string(),
        })
    });
    // Every registered vault, by name, for runbooks that go over all of them.
    let c = ctx.clone();
    engine.register_fn("vaults", move || -> RhaiResult<rhai::Array> {
        let names = c.pgvault.vault_names().map_err(coded)?;
        Ok(names
            .into_iter()
            .map(|name| Dynamic::from(VaultRef { name }))
            .collect())
    });
    let c = ctx.clone();
    engine.register_fn("to_json", move |v: &mut VaultRef| -> RhaiResult<String> {
        let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
        Ok(serde_json::to_string_pretty(&vault.to_azure_json()).expect("JSON serializes"))
    });

    let c = ctx.clone();
    engine.register_fn(
        "create_policy",
        move |v: &mut VaultRef, name: &str, policy: Dynamic| -> RhaiResult<Dynamic> {
            let policy: BackupPolicy = from_dynamic("policy", &policy)?;
            to_dynamic(
                &c.block_on(c.pgvault.create_policy(&v.name, name, &policy))
                    .map_err(coded)?,
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "policy",
        move |v: &mut VaultRef, name: &str| -> RhaiResult<Dynamic> {
            let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
            to_dynamic(&c.block_on(vault.policy_json(name)).map_err(coded)?)
        },
    );
    let c = ctx.clone();
    engine.register_fn("policies", move |v: &mut VaultRef| -> RhaiResult<Dynamic> {
        let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
        to_dynamic(&c.block_on(vault.list_policies()).map_err(coded)?)
    });
    let c = ctx.clone();
    engine.register_fn(
        "protect",
        move |v: &mut VaultRef, instance: Dynamic| -> RhaiResult<Dynamic> {
            let request: BackupInstanceRequest = from_dynamic("backup instance", &instance)?;
            c.redactor.learn_reference(
                &request
                    .properties
                    .datasource_auth_credentials
                    .secret_store_resource
                    .uri,
            );
            if c.sandbox.is_some() {
                let (target, secret) = instance_target(&request.properties).map_err(coded)?;
                c.check_secret_destination(&secret, &target)?;
            }
            to_dynamic(
                &c.block_on(c.pgvault.protect(&v.name, request))
                    .map_err(coded)?,
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "instances",
        move |v: &mut VaultRef| -> RhaiResult<Dynamic> {
            let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
            let list = c.block_on(vault.list_instances()).map_err(coded)?;
            to_dynamic(
                &list
                    .iter()
                    .map(|i| vault.instance_json(i))
                    .collect::<Vec<_>>(),
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "recovery_points",
        move |v: &mut VaultRef, instance: &str| -> RhaiResult<Dynamic> {
            let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
            let rps = c.block_on(vault.recovery_points(instance)).map_err(coded)?;
            to_dynamic(
                &rps.iter()
                    .map(|m| vault.recovery_point_json(m))
                    .collect::<Vec<_>>(),
            )
        },
    );
}
