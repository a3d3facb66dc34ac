//! One backup, on demand or scheduled: validate, dump, store, then write the manifest.
//!
//! The manifest also records what a restore should find (schemas, extensions, tables and
//! their row counts), read in the snapshot `pg_dump` dumps: see [`crate::postgres::contents`].
//!
//! The order is the guarantee: packs and the index file first, the manifest last. A dump
//! that fails, or a process killed half way, leaves no manifest and so no recovery point;
//! whatever packs it wrote are unreferenced and the next backup reuses them.
//!
//! A dump "fails" when any of three judges says so: the writer (the vault could not store
//! the stream), `pg_dump` (a non-zero exit, or an error on its stderr whatever its exit
//! status) and the archive scanner (the stream is not one whole custom-format archive; see
//! [`crate::postgres::archive`]). The writer is heard first because `pg_dump`'s death by
//! SIGPIPE is the consequence of a writer that stopped reading.

use std::process::Stdio;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::protect::{instance_target, validate_for_backup};
use super::vault::Vault;
use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::human;
use crate::model::instance::{BackupInstanceRequest, PROTECTION_CONFIGURED};
use crate::model::policy::{BackupPolicy, DataStoreType};
use crate::model::resource;
use crate::model::retention;
use crate::postgres::archive::{ArchiveError, CustomArchive};
use crate::postgres::connection::ConnectParams;
use crate::postgres::contents::ExportedSnapshot;
use crate::postgres::tools::{ToolProcess, find_tool, tool_version};
use crate::store::damage::load_backup_index;
use crate::store::manifest::{
    BackupStats, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo, seal_manifest,
    sealed_manifest_overhead,
};
use crate::store::observe::{Recorded, StreamFormat as _};
use crate::store::paths;
use crate::store::writer::{Progress, write_stream};

/// Databases up to this size (`pg_database_size`) have their dump's start compressed harder
/// (`store::writer::DENSE_PREFIX`, its first 8 MiB): there the start is much of the stream,
/// and it keeps a small database's first backup below `pg_dump -Fc`'s file. A larger one
/// would pay the same few tenths of a second of CPU to save a fraction of a percent, and its
/// backup's time is what matters (the benchmark's 723 MiB database stores 0.86x `-Fc` at the
/// vault's level alone).
pub const DENSE_PREFIX_UP_TO: i64 = 256 << 20;

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
    /// The instance's ARM datasource type, which its jobs report as `dataSourceType`.
    pub datasource_type: String,
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
        datasource_type: inst.properties.data_source_info.datasource_type.clone(),
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
                    Error::caused_by(
                        ErrorCode::UserErrorInvalidRuleName,
                        format!("policy `{policy_name}`: {e}"),
                        e,
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
        Error::caused_by(
            ErrorCode::UserErrorInvalidPolicy,
            format!("policy `{policy_name}`: {e}"),
            e,
        )
    })
}

/// The steps of a backup, which the host records as its job's sub-tasks. `Dump` and `Upload`
/// run at once: `pg_dump` writes the stream while the vault stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The instance, its policy, the secret, the connection and the backup privileges.
    Validate,
    /// A snapshot is exported, then `pg_dump` dumps it, exits successfully without reporting
    /// an error, and its output is a complete custom-format archive.
    Dump,
    /// The stream is chunked, compressed and stored in packs, and the packs indexed. It
    /// starts once the snapshot is exported: what commits after that is not in the backup.
    Upload,
    /// The manifest is written: the recovery point exists.
    Commit,
}

impl Step {
    /// The sub-task name, as Azure's `extendedInfo.subTasks` shows it.
    pub fn name(self) -> &'static str {
        use crate::model::job::{TASK_COMMIT, TASK_DUMP, TASK_UPLOAD, TASK_VALIDATE};
        match self {
            Step::Validate => TASK_VALIDATE,
            Step::Dump => TASK_DUMP,
            Step::Upload => TASK_UPLOAD,
            Step::Commit => TASK_COMMIT,
        }
    }
}

/// Told when a step starts and how it ended: `Ok` with what it did, `Err` with why it failed.
/// A step still running when the backup returns ended with it (the backup's error says why).
pub trait Steps: Send + Sync {
    fn started(&self, step: Step);
    fn finished(&self, step: Step, result: std::result::Result<String, String>);
}

/// For callers that record no steps.
#[derive(Debug, Clone, Copy)]
pub struct NoSteps;

impl Steps for NoSteps {
    fn started(&self, _: Step) {}
    fn finished(&self, _: Step, _: std::result::Result<String, String>) {}
}

/// What the Validate step established.
struct Validated {
    instance: crate::model::instance::BackupInstanceRequest,
    datasource: crate::postgres::connection::Datasource,
    params: ConnectParams,
    facts: crate::postgres::readiness::DatabaseFacts,
    policy_name: String,
    policy: BackupPolicy,
    expiry_time: Option<DateTime<Utc>>,
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
    steps: &dyn Steps,
) -> Result<Manifest> {
    let started = std::time::Instant::now();
    steps.started(Step::Validate);
    let validated = validate(vault, req, ctx).await;
    steps.finished(
        Step::Validate,
        validated
            .as_ref()
            .map(|v| {
                format!(
                    "PostgreSQL {} reachable as {}, with the backup privileges",
                    v.facts.server_version, v.facts.user
                )
            })
            .map_err(|e| format!("{}: {}", e.code, e.message)),
    );
    let Validated {
        instance,
        datasource: ds,
        params,
        facts,
        policy_name,
        policy,
        expiry_time,
    } = validated?;
    let props = &instance.properties;

    // What the vault holds, and the stream of this instance's last recovery point (the
    // delta bases), are read before pg_dump starts, so its snapshot is held no longer.
    // The dedup index leaves out packs that are missing, truncated or recorded bad, so the
    // new point never inherits known damage (see `store::damage`).
    let index = Arc::new(load_backup_index(&vault.store).await?.0);
    let previous = vault
        .latest_recovery_point(&req.instance)
        .await?
        .map(|m| m.stream);
    let pg_dump = find_tool("pg_dump", facts.major())?;
    // Asking a tool its version may take up to its bound (seconds); not on a runtime thread.
    let pg_dump_version = {
        let pg_dump = pg_dump.clone();
        tokio::task::spawn_blocking(move || tool_version(&pg_dump))
            .await
            .unwrap_or_else(|_| crate::postgres::tools::UNKNOWN_VERSION.to_string())
    };
    // The whole database, uncompressed (chunks are compressed in parallel later, and a
    // compressed stream would not dedup), with owners and privileges kept so a restore can
    // choose to apply them.
    steps.started(Step::Dump);
    // pg_dump dumps a snapshot that a session of ours exported, and that session reads, in
    // the same snapshot, what a restore should find (schemas, extensions, row counts): the
    // facts the manifest records then describe exactly the dumped data.
    let snapshot = match export_snapshot(&params).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            steps.finished(Step::Dump, Err(error.message.clone()));
            return Err(error);
        }
    };
    let snapshot_arg = format!("--snapshot={}", snapshot.id());
    // From here on the dump's contents are fixed: whatever commits now is not in it.
    steps.started(Step::Upload);
    let mut dump = ToolProcess::spawn(
        &pg_dump,
        &[
            "--format=custom",
            "--compress=0",
            "--no-password",
            "--quote-all-identifiers",
            &snapshot_arg,
        ],
        &params.pg_env(),
        Stdio::null(),
        Stdio::piped(),
        params.password().into_iter().map(str::to_string).collect(),
    )?;
    tracing::info!(instance = %req.instance, job = %req.job_id, "pg_dump started");
    crate::fault::point("dump-started");
    let stdout = dump.child_mut().stdout.take().expect("stdout is piped");
    let mut writer_config = vault.writer_config()?;
    writer_config.dense_prefix = facts.database_size <= DENSE_PREFIX_UP_TO;
    // The facts are read while pg_dump runs, on the exporting session, which has nothing
    // else to do until pg_dump is done with its snapshot.
    let (written, contents) = tokio::join!(
        write_stream(
            &vault.store,
            index,
            &writer_config,
            stdout,
            progress.clone(),
            previous,
            CustomArchive.observer(),
        ),
        snapshot.contents()
    );
    let dumped = tokio::task::spawn_blocking(move || dump.wait())
        .await
        .map_err(|_| Error::new(ErrorCode::InternalError, "waiting for pg_dump failed"))?;
    let snapshot_id = snapshot.id().to_owned();
    // Only now may the exporting transaction end: pg_dump is done with the snapshot.
    if let Err(e) = snapshot.finish().await {
        tracing::warn!(instance = %req.instance, error = %e, "could not end the transaction that exported pg_dump's snapshot; the session ends with it anyway");
    }
    let contents = match contents {
        Ok(contents) => Some(contents),
        Err(e) => {
            tracing::warn!(instance = %req.instance, error = %e, "the database's contents could not be read in pg_dump's snapshot; restore drills of this recovery point will check the restore only");
            None
        }
    };
    let dumped_ok = || format!("{pg_dump_version} exited successfully (snapshot {snapshot_id})");
    // The verdict, cause before consequence. A writer that failed (the vault could not store
    // a pack, a worker died) stopped reading the pipe, and pg_dump then dies of SIGPIPE or
    // "could not write to output file": its failure is the consequence, so the writer's error
    // is the job's. A pg_dump that failed on its own ends the stream early, which the writer
    // takes as the end of the dump, so pg_dump's error comes next and says why. Last, the
    // stream itself: a pg_dump that exited 0 may still have written a truncated stream or
    // something else than an archive (a wrapper, a full disk under a pipe, a bug), and only
    // a whole custom archive restores.
    let outcome = match written {
        Ok(outcome) => outcome,
        Err(e) => {
            let error = Error::from(e);
            steps.finished(
                Step::Dump,
                match &dumped {
                    Ok(_) => Ok(dumped_ok()),
                    Err(e) => Err(format!(
                        "{e} (the vault had stopped storing its output: see the Upload step)"
                    )),
                },
            );
            steps.finished(Step::Upload, Err(error.message.clone()));
            return Err(error);
        }
    };
    if let Err(e) = dumped {
        let error = Error::new(
            ErrorCode::UserErrorPgDumpFailed,
            format!("pg_dump did not complete, so no recovery point was made: {e}"),
        );
        steps.finished(Step::Dump, Err(error.message.clone()));
        return Err(error);
    }
    if let Err(e) = &outcome.archive {
        let code = e
            .downcast_ref::<ArchiveError>()
            .map_or(ErrorCode::UserErrorPgDumpNotAnArchive, ArchiveError::code);
        let error = Error::new(
            code,
            format!(
                "pg_dump exited successfully, but its output is not a complete custom-format \
                 archive, so no recovery point was made: {e}. Check that PGVAULT_PG_BINDIR (if \
                 set) points at PostgreSQL's own pg_dump, then back up again."
            ),
        );
        steps.finished(Step::Dump, Err(error.message.clone()));
        return Err(error);
    }
    steps.finished(Step::Dump, Ok(dumped_ok()));
    steps.finished(
        Step::Upload,
        Ok(format!(
            "{} read, {} stored in {} new chunks",
            human::size(outcome.stream.length),
            human::size(outcome.bytes_stored),
            outcome.new_chunks
        )),
    );
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

    steps.started(Step::Commit);
    let bytes_read = outcome.stream.length;
    let mut manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        recovery_point_id: uuid::Uuid::new_v4().simple().to_string(),
        backup_instance_name: req.instance.clone(),
        recovery_point_time: req.now,
        policy_name,
        policy_rule_name: policy
            .backup_rule()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        retention_tag_name: ctx.retention_tag.clone(),
        expiry_time,
        rehydration_expiry_time: None,
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
            // Set as the manifest is written: it counts the manifest too.
            bytes_stored: 0,
            new_chunks: outcome.new_chunks,
            duration_ms: started.elapsed().as_millis() as u64,
        },
        contents: contents.and_then(|c| Recorded::of(&c).ok()),
    };
    // The recovery point's figure counts every byte the backup added to the vault: packs,
    // index files and this manifest (see `Manifest::to_bytes_counting_itself`).
    let sealer = vault.store.sealer();
    let bytes = seal_manifest(
        sealer,
        manifest.to_bytes_counting_itself_sealed(
            outcome.bytes_stored,
            sealed_manifest_overhead(sealer),
        ),
    );
    let manifest_len = bytes.len() as u64;
    // On an immutable vault on Blob Storage the data is put under retention until the point's
    // expiry before the point exists, so no recovery point has data the storage would let go.
    if let Err(e) = vault
        .retain_stream(
            DataStoreType::VaultStore,
            &manifest.stream,
            manifest.expiry_time,
        )
        .await
    {
        steps.finished(Step::Commit, Err(e.message.clone()));
        return Err(e);
    }
    crate::fault::point("before-manifest");
    let committed = vault
        .store
        .put(
            &paths::recovery_point(&req.instance, &manifest.recovery_point_id),
            bytes.into(),
        )
        .await;
    if committed.is_ok() {
        progress
            .bytes_stored
            .fetch_add(manifest_len, std::sync::atomic::Ordering::Relaxed);
    }
    steps.finished(
        Step::Commit,
        committed
            .as_ref()
            .map(|_| format!("recovery point {}", manifest.recovery_point_id))
            .map_err(|e| e.to_string()),
    );
    committed?;
    if let Err(e) = vault
        .retain_manifest(
            DataStoreType::VaultStore,
            &paths::recovery_point(&req.instance, &manifest.recovery_point_id),
            manifest.expiry_time,
        )
        .await
    {
        // The point exists and pgvault refuses to remove it before its expiry; only the
        // storage's own guard of its manifest is missing (its packs have theirs).
        tracing::error!(instance = %req.instance, recovery_point = %manifest.recovery_point_id, "the manifest could not be put under retention: {}", e.message);
    }
    Ok(manifest)
}

/// A fresh session with its exported snapshot (see [`ExportedSnapshot`]).
async fn export_snapshot(params: &ConnectParams) -> Result<ExportedSnapshot> {
    let client = params.connect().await?;
    ExportedSnapshot::export(client).await.map_err(|e| {
        Error::caused_by(
            ErrorCode::UserErrorDBQueryFailed,
            format!("exporting a snapshot for pg_dump failed: {e}"),
            e,
        )
    })
}

/// Refuses a backup of an instance whose protection is stopped or suspended.
pub fn check_protected(instance: &BackupInstanceRequest) -> Result<()> {
    let state = instance
        .properties
        .current_protection_state
        .as_deref()
        .unwrap_or_default();
    if state != PROTECTION_CONFIGURED {
        return Err(Error::new(
            ErrorCode::UserErrorBackupInstanceNotProtected,
            format!(
                "backup instance `{}` is not protected (its state is `{state}`); \
                 `pgvault backup-instance resume-protection` resumes backups",
                instance.name
            ),
        ));
    }
    Ok(())
}

/// The Validate step: the instance is protected, its policy readable, its secret resolves,
/// the server answers and the login has the backup privileges.
async fn validate(vault: &Vault, req: &BackupRequest, ctx: &BackupContext) -> Result<Validated> {
    let instance = vault.instance(&req.instance).await?;
    let props = &instance.properties;
    check_protected(&instance)?;
    let policy_name = resource::last_segment(&props.policy_info.policy_id).to_string();
    let policy = vault.policy(&policy_name).await?;
    let plan = retention::retention_plan(
        &policy,
        policy_zone(&policy, &policy_name)?,
        req.now,
        &ctx.retention_tag,
    );
    let expiry_time = plan.spans.first().and_then(|vault_tier| vault_tier.until);
    let (datasource, secret) = instance_target(props)?;
    let (params, facts) = validate_for_backup(&datasource, &secret).await?;
    Ok(Validated {
        instance,
        datasource,
        params,
        facts,
        policy_name,
        policy,
        expiry_time,
    })
}
