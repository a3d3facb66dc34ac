//! One backup, on demand or scheduled: validate, dump, store, then write the manifest.
//!
//! The order is the guarantee: packs and the index file first, the manifest last. A dump
//! that fails, or a process killed half way, leaves no manifest and so no recovery point;
//! whatever packs it wrote are unreferenced and the next backup reuses them.

use std::process::Stdio;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::protect::{instance_target, validate_for_backup};
use super::vault::Vault;
use super::{Error, Result};
use crate::model::instance::PROTECTION_CONFIGURED;
use crate::model::policy::BackupPolicy;
use crate::model::resource;
use crate::model::retention;
use crate::postgres::tools::{ToolProcess, find_tool, tool_version};
use crate::store::manifest::{
    BackupStats, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
};
use crate::store::paths;
use crate::store::reader::load_index;
use crate::store::writer::{Progress, write_stream};

/// How a backup was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    OnDemand,
    Scheduled,
}

#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub instance: String,
    /// The rule an on-demand backup names (`--rule-name`): a backup rule (`BackupWeekly`,
    /// which takes the default tag) or a retention rule or tag (`Monthly`). Ignored for a
    /// scheduled backup, whose tag the schedule's tagging criteria choose.
    pub rule_name: String,
    /// `--retention-tag-override`: the tag for an on-demand backup naming a backup rule.
    pub tag_override: Option<String>,
    pub trigger: Trigger,
    pub job_id: String,
    /// The time the backup starts, recorded as the recovery point time.
    pub now: DateTime<Utc>,
}

/// What the job records about a backup before it finishes: the names resolved.
#[derive(Clone, Debug, Default)]
pub struct BackupContext {
    pub policy_name: String,
    pub datasource_name: String,
    pub datasource_id: String,
    pub friendly_name: String,
    /// The policy's backup rule (`BackupWeekly`).
    pub policy_rule_name: String,
    /// The tag the recovery point gets, which names the retention rule that keeps it.
    pub retention_tag: String,
}

/// Resolves the names a backup job records, before the backup runs: refuses a rule name the
/// policy does not have before any job starts.
pub async fn backup_context(vault: &Vault, req: &BackupRequest) -> Result<BackupContext> {
    let inst = vault.instance(&req.instance).await?;
    let policy_name = resource::last_segment(&inst.properties.policy_info.policy_id).to_string();
    let policy = vault.policy(&policy_name).await?;
    let retention_tag = backup_tag(vault, &policy, &policy_name, req).await?;
    Ok(BackupContext {
        policy_rule_name: policy
            .backup_rule()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        retention_tag,
        policy_name,
        datasource_name: inst.properties.data_source_info.resource_name.clone(),
        datasource_id: inst.properties.data_source_info.resource_id.clone(),
        friendly_name: inst.properties.friendly_name.clone(),
    })
}

/// The tag a backup gets, by the policy engine's rules ([`crate::model::retention`]): the
/// rule an on-demand backup names, or the tagging criteria a scheduled one matches given the
/// instance's latest recovery point.
async fn backup_tag(
    vault: &Vault,
    policy: &BackupPolicy,
    policy_name: &str,
    req: &BackupRequest,
) -> Result<String> {
    match req.trigger {
        Trigger::OnDemand => {
            retention::on_demand_backup_tag(policy, &req.rule_name, req.tag_override.as_deref())
                .map_err(|e| {
                    Error::new(
                        "UserErrorInvalidRuleName",
                        format!("policy `{policy_name}`: {e}"),
                    )
                })
        }
        Trigger::Scheduled => {
            let zone = policy_zone(policy, policy_name)?;
            let previous = vault
                .latest_recovery_point(&req.instance)
                .await?
                .map(|m| m.recovery_point_time);
            Ok(retention::scheduled_backup_tag(
                policy, zone, req.now, previous,
            ))
        }
    }
}

fn policy_zone(policy: &BackupPolicy, policy_name: &str) -> Result<chrono_tz::Tz> {
    retention::policy_zone(policy).map_err(|e| {
        Error::new(
            "UserErrorInvalidPolicy",
            format!("policy `{policy_name}`: {e}"),
        )
    })
}

/// Takes one backup and returns its manifest (the recovery point).
///
/// `ctx` is what [`backup_context`] resolved for this request before the job started; the
/// recovery point gets the tag recorded there, so the job and the recovery point always agree.
pub async fn backup(
    vault: &Vault,
    req: &BackupRequest,
    ctx: &BackupContext,
    progress: Arc<Progress>,
) -> Result<Manifest> {
    let started = std::time::Instant::now();
    let inst = vault.instance(&req.instance).await?;
    let props = &inst.properties;
    let state = props
        .current_protection_state
        .as_deref()
        .unwrap_or_default();
    if state != PROTECTION_CONFIGURED {
        return Err(Error::new(
            "UserErrorBackupInstanceNotProtected",
            format!(
                "backup instance `{}` is not protected (its state is `{state}`); \
                 `pgvault backup-instance resume-protection` resumes backups",
                req.instance
            ),
        ));
    }
    let policy_name = resource::last_segment(&props.policy_info.policy_id).to_string();
    let policy = vault.policy(&policy_name).await?;
    let tag = ctx.retention_tag.clone();
    let plan =
        retention::retention_plan(&policy, policy_zone(&policy, &policy_name)?, req.now, &tag);
    let expiry_time = plan.spans.first().and_then(|vault_tier| vault_tier.until);
    let (ds, secret) = instance_target(props)?;

    let (params, facts) = validate_for_backup(&ds, &secret).await?;
    // What the vault holds, and the stream of this instance's last recovery point (the
    // delta bases), are read before pg_dump starts, so its snapshot is held no longer.
    let index = Arc::new(load_index(&vault.store).await?);
    let previous = vault
        .latest_recovery_point(&req.instance)
        .await?
        .map(|m| m.stream);
    let pg_dump = find_tool("pg_dump", facts.major())?;
    let pg_dump_version = tool_version(&pg_dump);
    // The whole database, uncompressed (chunks are compressed in parallel later, and a
    // compressed stream would not dedup), with owners and privileges kept so a restore can
    // choose to apply them.
    let mut dump = ToolProcess::spawn(
        &pg_dump,
        &[
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--quote-all-identifiers",
        ],
        &params.pg_env(),
        Stdio::null(),
        Stdio::piped(),
        params.password().into_iter().map(str::to_string).collect(),
    )?;
    tracing::info!(instance = %req.instance, job = %req.job_id, "pg_dump started");
    let stdout = dump.child_mut().stdout.take().expect("stdout is piped");
    let written = write_stream(
        &vault.store,
        index,
        &vault.writer_config()?,
        stdout,
        progress.clone(),
        previous,
    )
    .await;
    // pg_dump's verdict comes first: a stream that ended because pg_dump died is not a backup.
    let dumped = tokio::task::spawn_blocking(move || dump.wait())
        .await
        .map_err(|_| Error::new("InternalError", "waiting for pg_dump failed"))?;
    if let Err(e) = dumped {
        return Err(Error::new(
            "UserErrorPgDumpFailed",
            format!("pg_dump did not complete, so no recovery point was made: {e}"),
        ));
    }
    let outcome = written?;
    tracing::info!(
        instance = %req.instance,
        bytes_read = outcome.stream.length,
        chunks = outcome.stream.chunk_count,
        new_chunks = outcome.new_chunks,
        delta_candidates = progress.delta_candidates.load(std::sync::atomic::Ordering::Relaxed),
        delta_chunks = progress.delta_chunks.load(std::sync::atomic::Ordering::Relaxed),
        bytes_stored = outcome.bytes_stored,
        "dump stored"
    );
    if let Err(reason) = &outcome.archive {
        tracing::warn!(instance = %req.instance, %reason, "the dump's table of contents could not be scanned; single-table restores of this recovery point will read the whole stream");
    }

    let bytes_read = outcome.stream.length;
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        recovery_point_id: uuid::Uuid::new_v4().simple().to_string(),
        backup_instance_name: req.instance.clone(),
        recovery_point_time: req.now,
        policy_name,
        policy_rule_name: policy
            .backup_rule()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        retention_tag_name: tag,
        expiry_time,
        job_id: req.job_id.clone(),
        datasource: DatasourceInfo {
            resource_id: props.data_source_info.resource_id.clone(),
            server: ds.host().to_string(),
            port: ds.port(),
            database: ds.database().to_string(),
        },
        postgres: PostgresInfo {
            server_version: facts.server_version.clone(),
            pg_dump_version,
            database_size: facts.database_size,
            username_used: facts.user.clone(),
        },
        chunker: vault.config.chunker.clone(),
        stream: outcome.stream,
        archive: outcome.archive.ok(),
        stats: BackupStats {
            bytes_read,
            bytes_stored: outcome.bytes_stored,
            new_chunks: outcome.new_chunks,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    };
    vault
        .store
        .put(
            &paths::recovery_point(&req.instance, &manifest.recovery_point_id),
            manifest.to_bytes().into(),
        )
        .await?;
    Ok(manifest)
}
