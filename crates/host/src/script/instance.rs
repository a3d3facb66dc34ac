//! Rhai bindings for backup instances and their operations: `initialize_instance`,
//! `vault.adhoc_backup`, `vault.restore`, `vault.restore_as_files`, the protection states
//! (`vault.suspend_backups`, `vault.stop_protection`, `vault.resume_protection`) and the two
//! calls that delete backup data (`vault.delete_recovery_point`,
//! `vault.delete_backup_instance`). [`ScriptContext::check_destructive`] guards the deletions
//! and the protection states in a sandbox; the sandbox's grants say where restores may go.

use rhai::{Dynamic, Engine, Map};

use super::vault::VaultRef;
use super::{RhaiResult, ScriptContext, coded, fail, to_dynamic};
use pgvault_core::engine::protect::{InitializeArgs, initialize_instance};
use pgvault_core::engine::restore::{
    FilesTarget, initialize_for_data_recovery, initialize_for_data_recovery_to_files,
};
use pgvault_core::model::instance::{BACKUPS_SUSPENDED, PROTECTION_CONFIGURED, PROTECTION_STOPPED};
use pgvault_core::model::job::{Job, JobStatus};
use pgvault_core::postgres::connection::Datasource;

/// A string option of a map, required. Shared by the bindings that take `#{ .. }` options.
pub(super) fn field(map: &Map, key: &str) -> RhaiResult<String> {
    opt_field(map, key)?.ok_or_else(|| fail(format!("missing `{key}`")))
}

fn opt_field(map: &Map, key: &str) -> RhaiResult<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .clone()
            .into_string()
            .map(Some)
            .map_err(|t| fail(format!("`{key}` must be a string, not {t}"))),
    }
}

/// A finished job as Azure's JSON, with Azure's `jobId` at the top level as `adhoc-backup`
/// and `restore trigger` print it; a failed job becomes a script error, so a runbook
/// never carries on after a backup or restore that did not happen.
pub(super) fn job_result(ctx: &ScriptContext, job: &Job) -> RhaiResult<Dynamic> {
    if job.status() == JobStatus::Failed {
        let (code, message) = job
            .state
            .error()
            .map(|e| (e.code.to_string(), e.message.clone()))
            .unwrap_or_default();
        return Err(fail(format!("job {} failed: {code}: {message}", job.id)));
    }
    to_dynamic(&ctx.operation_json(job))
}

/// The instance name from a name or an instance map.
fn instance_name(v: &Dynamic) -> RhaiResult<String> {
    if let Some(map) = v.read_lock::<Map>() {
        return field(&map, "name");
    }
    v.clone()
        .into_string()
        .map_err(|t| fail(format!("expected a backup instance or its name, not {t}")))
}

pub fn register(engine: &mut Engine, ctx: &ScriptContext) {
    engine.register_fn("initialize_instance", |opts: Map| -> RhaiResult<Dynamic> {
        let args = InitializeArgs {
            datasource_type: field(&opts, "datasource_type")?,
            datasource_id: field(&opts, "datasource_id")?,
            policy_id: field(&opts, "policy_id")?,
            secret_store_type: field(&opts, "secret_store_type")?,
            secret_store_uri: field(&opts, "secret_store_uri")?,
            location: opt_field(&opts, "location")?,
        };
        to_dynamic(&initialize_instance(&args).map_err(coded)?)
    });

    let c = ctx.clone();
    engine.register_fn(
        "adhoc_backup",
        move |v: &mut VaultRef, instance: Dynamic, rule: &str| -> RhaiResult<Dynamic> {
            let name = instance_name(&instance)?;
            let (job, _) = c
                .block_on(c.pgvault.adhoc_backup(&v.name, &name, rule, None))
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    // `vault.adhoc_backup(bi, "BackupWeekly", "Monthly")`: a backup rule with a retention tag
    // override (`--retention-tag-override`).
    let c = ctx.clone();
    engine.register_fn(
        "adhoc_backup",
        move |v: &mut VaultRef,
              instance: Dynamic,
              rule: &str,
              tag_override: &str|
              -> RhaiResult<Dynamic> {
            let name = instance_name(&instance)?;
            let (job, _) = c
                .block_on(
                    c.pgvault
                        .adhoc_backup(&v.name, &name, rule, Some(tag_override)),
                )
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "restore",
        move |v: &mut VaultRef, instance: Dynamic, opts: Map| -> RhaiResult<Dynamic> {
            let name = instance_name(&instance)?;
            let target_url = field(&opts, "target_database_url")?;
            let secret_uri = field(&opts, "secret_store_uri")?;
            c.redactor.learn_reference(&secret_uri);
            let request = initialize_for_data_recovery(
                &field(&opts, "recovery_point_id")?,
                &target_url,
                opt_field(&opts, "secret_store_type")?.as_deref(),
                &secret_uri,
                None,
            )
            .map_err(coded)?;
            c.check_grants(|g| {
                let target: Datasource = target_url.parse()?;
                g.check_restore_server(&target)
            })?;
            let (job, _) = c
                .block_on(c.pgvault.restore(&v.name, &name, &request))
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "restore_as_files",
        move |v: &mut VaultRef, instance: Dynamic, opts: Map| -> RhaiResult<Dynamic> {
            let name = instance_name(&instance)?;
            // A folder (`target_directory`) or a Blob container (`target_blob_container_url`).
            let target = FilesTarget::choose(
                opt_field(&opts, "target_directory")?.as_deref(),
                opt_field(&opts, "target_blob_container_url")?.as_deref(),
            )
            .map_err(coded)?;
            let file_name = opt_field(&opts, "file_name")?.unwrap_or_default();
            c.check_grants(|g| match &target {
                FilesTarget::Directory(dir) | FilesTarget::BlobContainer(dir) => {
                    g.check_restore_dir(dir, &file_name)
                }
            })?;
            let request = initialize_for_data_recovery_to_files(
                &field(&opts, "recovery_point_id")?,
                &target,
                &file_name,
                None,
            )
            .map_err(coded)?;
            let (job, _) = c
                .block_on(c.pgvault.restore(&v.name, &name, &request))
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    // Azure's suspendBackups, stopProtection and resumeProtection. Recovery points are kept
    // in every state, but suspending and stopping end the backups that protect the database,
    // and resuming a stopped instance lets its points (kept forever while stopped) expire
    // again: all three need the destructive grant in a sandbox (resume only from stopped).
    for (function, state) in [
        ("suspend_backups", BACKUPS_SUSPENDED),
        ("stop_protection", PROTECTION_STOPPED),
        ("resume_protection", PROTECTION_CONFIGURED),
    ] {
        let c = ctx.clone();
        engine.register_fn(
            function,
            move |v: &mut VaultRef, instance: Dynamic| -> RhaiResult<Dynamic> {
                let name = instance_name(&instance)?;
                if state == PROTECTION_CONFIGURED {
                    if c.sandbox.is_some() {
                        let vault = c.block_on(c.pgvault.vault(&v.name)).map_err(coded)?;
                        let current = c.block_on(vault.instance(&name)).map_err(coded)?;
                        if current.properties.current_protection_state.as_deref()
                            == Some(PROTECTION_STOPPED)
                        {
                            c.check_destructive(
                                function,
                                "lets the recovery points a stopped instance keeps expire again",
                            )?;
                        }
                    }
                } else {
                    c.check_destructive(function, "stops the backups of an instance")?;
                }
                let json = c
                    .block_on(c.pgvault.set_protection_state(&v.name, &name, state))
                    .map_err(coded)?;
                to_dynamic(&json)
            },
        );
    }

    let c = ctx.clone();
    engine.register_fn(
        "delete_recovery_point",
        move |v: &mut VaultRef,
              instance: Dynamic,
              recovery_point_id: &str|
              -> RhaiResult<Dynamic> {
            c.check_destructive("delete_recovery_point", "deletes backup data")?;
            let name = instance_name(&instance)?;
            let job = c
                .block_on(
                    c.pgvault
                        .delete_recovery_point(&v.name, &name, recovery_point_id),
                )
                .map_err(coded)?;
            job_result(&c, &job)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "delete_backup_instance",
        move |v: &mut VaultRef, instance: Dynamic| -> RhaiResult<Dynamic> {
            c.check_destructive("delete_backup_instance", "deletes backup data")?;
            let name = instance_name(&instance)?;
            let jobs = c
                .block_on(c.pgvault.delete_backup_instance(&v.name, &name))
                .map_err(coded)?;
            let shown = jobs
                .iter()
                .map(|j| job_result(&c, j))
                .collect::<RhaiResult<Vec<Dynamic>>>()?;
            Ok(Dynamic::from_array(shown))
        },
    );
}
