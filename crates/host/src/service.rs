//! The service layer: every operation a user can ask for, wrapped in a job.
//!
//! The CLI and the Rhai engine both call [`Pgvault`], so an operation behaves and is
//! recorded the same way whichever door it came through. Every operation recorded as a job
//! runs through one lifecycle, [`crate::job_run::JobRun`]: the job is recorded `InProgress`
//! with the locks it holds, refreshes its byte counters and sub-tasks while it runs, and ends
//! `Completed`, `Failed` (the engine's error code and message; `InternalError` for a panic) or
//! `Cancelled` (its future dropped), with its locks released, on every path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use pgvault_core::engine::backup::{BackupRequest, Trigger, backup, backup_context};
use pgvault_core::engine::home::Home;
use pgvault_core::engine::leftovers::{Cleaned, Leftovers};
use pgvault_core::engine::protect::create_instance;
use pgvault_core::engine::restore::{RestoreOutcome, restore_with_steps};
use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::instance::BackupInstanceRequest;
use pgvault_core::model::job::{
    DATASOURCE_TYPE_DETAIL, FRIENDLY_NAME_DETAIL, Job, JobFilter, JobId, JobStatus, NewJob,
    Operation, RECOVERY_POINT_TIME_DETAIL, ScheduledRun, azure_time,
};
use pgvault_core::model::policy::BackupPolicy;
use pgvault_core::model::resource::{ResourceGroup, SubscriptionId};
use pgvault_core::model::restore::{RestoreRequest, RestoreTarget};
use pgvault_core::store::VaultStore;
use pgvault_core::store::lock::{InstanceLock, InstanceLockError, LockKind, VaultLock};
use pgvault_core::store::manifest::Manifest;
use pgvault_core::store::writer::Progress;

use crate::clock::{Clock, SystemClock};
use crate::history::{JobHistory, current_owner, local_host_name, process_alive};
use crate::job_run::{Held, JobRun, shielded, wait_for_lock};

/// The environment variable that sets how long a backup, restore or drill waits for a vault
/// held by garbage collection (or an index rebuild) before it fails: seconds, or a number
/// with `s`, `m` or `h`.
pub const LOCK_WAIT_ENV: &str = "PGVAULT_LOCK_WAIT";
/// [`LOCK_WAIT_ENV`]'s default: long enough for the garbage collection of a large vault.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10 * 60);

/// `PGVAULT_LOCK_WAIT`'s value as a duration: `90`, `90s`, `15m`, `1h`.
pub fn parse_lock_wait(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("{LOCK_WAIT_ENV}=`{text}` is not a duration: write seconds, or a number with s, m or h (e.g. 15m)")
    })?;
    let seconds = match unit.trim() {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "{LOCK_WAIT_ENV}=`{text}` is not a duration: write seconds, or a number with s, m or h (e.g. 15m)"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// pgvault with its home: the vault registry and the job history.
pub struct Pgvault {
    home: Home,
    history: JobHistory,
    /// How long a backup, restore or drill waits for garbage collection to let the vault go.
    lock_wait: Duration,
    /// Where every operation reads the time (the wall clock unless a caller sets another).
    clock: Arc<dyn Clock>,
    /// The resource group of each vault opened so far (a vault's group never changes).
    groups: crate::arm::GroupCache,
}

impl std::fmt::Debug for Pgvault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pgvault").field("home", &self.home).finish()
    }
}

pub(crate) fn history_err(e: crate::history::HistoryError) -> Error {
    Error::caused_by(ErrorCode::JobHistoryError, format!("job history: {e}"), e)
}

impl Pgvault {
    /// Opens the home's job history and marks jobs whose process died as interrupted.
    pub fn open(home: Home) -> Result<Self> {
        Self::open_with_clock(home, Arc::new(SystemClock))
    }

    /// [`Self::open`] with the clock every operation reads the time from.
    pub fn open_with_clock(home: Home, clock: Arc<dyn Clock>) -> Result<Self> {
        let history = JobHistory::open(home.jobs_db()).map_err(history_err)?;
        let interrupted = history
            .mark_interrupted(clock.now(), &local_host_name(), process_alive)
            .map_err(history_err)?;
        for job in interrupted {
            tracing::warn!(job = %job.id, operation = %job.operation, "a job left running by a stopped pgvault process was marked Failed");
            // A backup, restore or drill whose process died failed: it raises its alert.
            crate::alerts::job_finished(&history, &job);
        }
        let lock_wait = match std::env::var(LOCK_WAIT_ENV) {
            Ok(text) => parse_lock_wait(&text)
                .map_err(|message| Error::new(ErrorCode::UserErrorInvalidLockWait, message))?,
            Err(_) => DEFAULT_LOCK_WAIT,
        };
        Ok(Pgvault {
            home,
            history,
            lock_wait,
            clock,
            groups: Default::default(),
        })
    }

    /// The time, from the host's clock: what every operation records and decides by.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The host's clock, for the loop that serves it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Sets how long a backup, restore or drill waits for a vault held by garbage collection.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// A shared lock on `store` for `operation`, waiting up to the configured lock wait while
    /// garbage collection (or an index rebuild) holds the vault: those end by themselves, and
    /// a scheduled backup that failed at once would be lost until its next occurrence.
    pub(crate) async fn shared_lock(
        &self,
        store: &VaultStore,
        operation: &str,
    ) -> Result<VaultLock> {
        wait_for_lock(store, LockKind::Shared, operation, self.lock_wait).await
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Where restores and drills record what they create outside the vault (see
    /// `pgvault_core::engine::leftovers`).
    pub fn leftovers(&self) -> Leftovers {
        Leftovers::in_home(self.home.dir())
    }

    /// Removes what killed restores and drills left behind and says so; `serve` calls it on
    /// each turn.
    pub async fn clean_leftovers(&self) -> Vec<Cleaned> {
        clean_leftovers(&self.home).await
    }

    pub fn history(&self) -> &JobHistory {
        &self.history
    }

    // ---- vaults ----

    /// `backup-vault create`: creates the vault's store and registers its name.
    /// The vault is in resource `group` (`-g`, default `pgvault`) for its whole life.
    pub async fn create_vault(
        &self,
        name: &str,
        group: &ResourceGroup,
        storage_url: Option<&str>,
    ) -> Result<Value> {
        self.create_vault_with(name, group, storage_url, None, None)
            .await
    }

    /// `create_vault` with an explicit average chunk size (bytes), encrypted when
    /// `encryption_key` names a key (`--encryption-key-uri`: `env:`, `file:` or an Azure Key
    /// Vault key URI). The key is read (or Key Vault asked to wrap) before anything is created.
    pub async fn create_vault_with(
        &self,
        name: &str,
        group: &ResourceGroup,
        storage_url: Option<&str>,
        chunk_avg: Option<u32>,
        encryption_key: Option<&str>,
    ) -> Result<Value> {
        let mut registry = self.home.registry()?;
        let url = self.check_new_vault(name, storage_url, None)?;
        if let Some(reference) = encryption_key {
            pgvault_core::engine::keys::parse_reference(reference)?;
        }
        let vault = Vault::create_with(
            VaultStore::create(&url).await?,
            name,
            group,
            self.now(),
            chunk_avg,
            encryption_key,
        )
        .await?
        .in_subscription(self.subscription_id().clone());
        self.groups.remember(vault.name(), vault.resource_group());
        registry.vaults.insert(name.to_string(), url);
        self.home.save_registry(&registry)?;
        Ok(vault.to_azure_json())
    }

    /// The subscription this host serves (`PGVAULT_SUBSCRIPTION_ID`, or the all-zero GUID):
    /// every id it prints is under it.
    pub fn subscription_id(&self) -> &SubscriptionId {
        self.home.subscription_id()
    }

    /// Refuses a vault `name` at `storage_url` (default: under the home), with its archive tier
    /// at `archive_url`, before anything is created: a name taken ignoring case, or a place
    /// inside or around a vault, a system folder or the home's files
    /// ([`Home::check_placement`]). Returns the vault's storage URL.
    pub fn check_new_vault(
        &self,
        name: &str,
        storage_url: Option<&str>,
        archive_url: Option<&str>,
    ) -> Result<String> {
        let mut registry = self.home.registry()?;
        let url = match storage_url {
            Some(u) => u.to_string(),
            None => format!("file://{}", self.home.default_vault_dir(name).display()),
        };
        self.home.check_new_vault(&registry, name, &url)?;
        if let Some(archive) = archive_url {
            registry.vaults.insert(name.to_owned(), url.clone());
            self.home
                .check_placement(&registry, archive, "an archive tier")?;
        }
        Ok(url)
    }

    /// `backup-vault update --archive-storage-url`: gives the vault its archive tier.
    pub async fn set_archive_storage(&self, name: &str, url: &str) -> Result<Value> {
        self.set_archive_settings(name, Some(url), None).await
    }

    /// `backup-vault create|update --archive-storage-url --archive-access-tier`.
    pub async fn set_archive_settings(
        &self,
        name: &str,
        url: Option<&str>,
        tier: Option<pgvault_core::store::ArchiveAccessTier>,
    ) -> Result<Value> {
        let mut vault = self.vault(name).await?;
        if let Some(url) = url
            && vault.config.archive_storage_url.as_deref() != Some(url)
        {
            let registry = self.home.registry()?;
            self.home
                .check_placement(&registry, url, "an archive tier")?;
        }
        vault.set_archive_settings(url, tier).await?;
        Ok(vault.to_azure_json())
    }

    /// An encrypted vault's key slots (`backup-vault key list`): id, kind, reference, when
    /// made; never the wrapped key.
    pub async fn vault_keys(&self, name: &str) -> Result<Vec<Value>> {
        let vault = self.vault(name).await?;
        if !vault.is_encrypted() {
            return Err(not_encrypted(vault.name()));
        }
        Ok(vault.key_slots().iter().map(key_slot_json).collect())
    }

    /// Adds a key that opens the vault (`backup-vault key add`); the vault must be opened
    /// with one of its keys first.
    pub async fn add_vault_key(&self, name: &str, reference: &str) -> Result<Value> {
        let mut vault = self.vault(name).await?;
        let slot = vault.add_key(reference, self.now()).await?;
        tracing::info!(vault = vault.name(), slot = %slot.id, reference = %slot.reference, "key slot added");
        Ok(key_slot_json(&slot))
    }

    /// Wraps the data key again with the key a slot names (`backup-vault key rotate`).
    pub async fn rotate_vault_key(&self, name: &str, slot: &str) -> Result<Value> {
        let mut vault = self.vault(name).await?;
        let slot = vault.rotate_key(slot, self.now()).await?;
        tracing::info!(vault = vault.name(), slot = %slot.id, reference = %slot.reference, "key slot rewrapped");
        Ok(key_slot_json(&slot))
    }

    /// Removes a key slot (`backup-vault key remove`); never the last.
    pub async fn remove_vault_key(&self, name: &str, slot: &str) -> Result<Value> {
        let mut vault = self.vault(name).await?;
        let slot = vault.remove_key(slot).await?;
        tracing::info!(vault = vault.name(), slot = %slot.id, reference = %slot.reference, "key slot removed");
        Ok(key_slot_json(&slot))
    }

    pub(crate) async fn vault(&self, name: &str) -> Result<Vault> {
        let registry = self.home.registry()?;
        let (_, url) = registry
            .vaults
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<&str> = registry.vaults.keys().map(String::as_str).collect();
                Error::new(ErrorCode::UserErrorVaultNotFound,
                    format!(
                        "no vault named `{name}` in {} (known: {}); create it with `pgvault backup-vault create`",
                        self.home.dir().display(),
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                )
            })?;
        let vault = Vault::open(VaultStore::open(url)?)
            .await?
            .in_subscription(self.subscription_id().clone());
        self.groups.remember(vault.name(), vault.resource_group());
        Ok(vault)
    }

    pub(crate) fn groups(&self) -> &crate::arm::GroupCache {
        &self.groups
    }

    pub fn vault_names(&self) -> Result<Vec<String>> {
        Ok(self.home.registry()?.vaults.into_keys().collect())
    }

    // ---- policies and instances ----

    pub async fn create_policy(
        &self,
        vault: &str,
        name: &str,
        policy: &BackupPolicy,
    ) -> Result<Value> {
        self.vault(vault).await?.create_policy(name, policy).await
    }

    /// `backup-instance create`: validates against the database, then protects, recorded
    /// as a `ConfigureBackup` job.
    pub async fn protect(&self, vault_name: &str, request: BackupInstanceRequest) -> Result<Value> {
        let vault = self.vault(vault_name).await?;
        let mut new = NewJob::new(
            Operation::ConfigureBackup,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(request.name.clone());
        new.describe_instance(&request.properties);
        // A policy id of another vault fails the job (in `create_instance`) with no policy named.
        new.policy_name = vault
            .policy_name_of(&request.properties.policy_info.policy_id)
            .ok();
        let run = JobRun::start(&self.history, &new, Held::nothing()).await?;
        let result = run.drive(create_instance(&vault, request), || (0, 0)).await;
        run.finish(result.as_ref().map(|_| None), 0, 0).await?;
        result
    }

    /// `backup-instance suspend-backup / stop-protection / resume-protection`: sets the
    /// instance's protection state and records the change as a `ConfigureBackup` job (with
    /// `ProtectionState` in its details). A resumed instance's schedule starts again from the
    /// resume, so the occurrences it missed while suspended are not run late.
    pub async fn set_protection_state(
        &self,
        vault_name: &str,
        instance: &str,
        state: &str,
    ) -> Result<Value> {
        let vault = self.vault(vault_name).await?;
        let before = vault.instance(instance).await?;
        if before.properties.current_protection_state.as_deref() == Some(state) {
            return Ok(vault.instance_json(&before));
        }
        let mut new = NewJob::new(
            Operation::ConfigureBackup,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_owned());
        new.describe_instance(&before.properties);
        new.extended_details
            .insert("ProtectionState".into(), state.to_owned());
        let run = JobRun::start(&self.history, &new, Held::nothing()).await?;
        let result = run
            .drive(vault.set_protection_state(instance, state), || (0, 0))
            .await;
        run.finish(result.as_ref().map(|_| None), 0, 0).await?;
        Ok(vault.instance_json(&result?))
    }

    // ---- backup ----

    /// An on-demand backup under `rule` (`adhoc-backup --rule-name`: a backup rule, which
    /// takes the default tag or `tag_override`, or a retention rule), as an `OnDemandBackup`
    /// job. The job is returned whether the backup worked or not; a failed job carries the
    /// error.
    pub async fn adhoc_backup(
        &self,
        vault_name: &str,
        instance: &str,
        rule: &str,
        tag_override: Option<&str>,
    ) -> Result<(Job, Option<Manifest>)> {
        self.run_backup(
            vault_name,
            instance,
            rule,
            tag_override,
            Trigger::OnDemand,
            self.now(),
        )
        .await
    }

    /// A backup as a job: on demand (see [`Self::adhoc_backup`]) or scheduled, when the
    /// policy's tagging criteria choose the tag and `rule` is ignored.
    pub async fn run_backup(
        &self,
        vault_name: &str,
        instance: &str,
        rule: &str,
        tag_override: Option<&str>,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<Manifest>)> {
        self.backup_job(
            vault_name,
            instance,
            rule,
            tag_override,
            trigger,
            now,
            BTreeMap::new(),
            None,
        )
        .await
    }

    /// [`Self::run_backup`] with details for the job and, for a scheduled run, the occurrence
    /// it stands for.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn backup_job(
        &self,
        vault_name: &str,
        instance: &str,
        rule: &str,
        tag_override: Option<&str>,
        trigger: Trigger,
        now: DateTime<Utc>,
        details: BTreeMap<String, String>,
        scheduled: Option<ScheduledRun>,
    ) -> Result<(Job, Option<Manifest>)> {
        let vault = self.vault(vault_name).await?;
        self.check_no_backup_running(vault.name(), instance)?;
        // The job history alone cannot refuse a backup started at the same instant (both
        // look before either records its job); the instance lock can.
        // The job's id is decided now, so the lock names it to a backup it refuses.
        let job_id = crate::job_run::claim_job_id().unwrap_or_default();
        let instance_lock = {
            let (store, name) = (vault.store.clone(), instance.to_owned());
            shielded(async move {
                InstanceLock::acquire(
                    &store,
                    &name,
                    &format!("backup of {name}"),
                    Some(&job_id.to_string()),
                )
                .await
            })
            .await?
            .map_err(|e| self.backup_refused(vault.name(), instance, e))?
        };
        let mut req = BackupRequest {
            instance: instance.to_string(),
            rule_name: rule.to_string(),
            tag_override: tag_override.map(str::to_string),
            trigger,
            job_id: String::new(),
            now,
        };
        let ctx = backup_context(&vault, &req).await?;
        // Garbage collection must not delete a chunk this backup is about to reference.
        let lock = self
            .shared_lock(&vault.store, &format!("backup of {instance}"))
            .await?;
        let operation = match trigger {
            Trigger::OnDemand => Operation::OnDemandBackup,
            Trigger::Scheduled => Operation::ScheduledBackup,
        };
        let mut new = NewJob::new(operation, vault.name(), now, current_owner());
        new.id = job_id;
        new.backup_instance_name = Some(instance.to_string());
        new.datasource_name = Some(ctx.datasource_name.clone());
        new.datasource_id = Some(ctx.datasource_id.clone());
        new.policy_name = Some(ctx.policy_name.clone());
        new.extended_details
            .insert(FRIENDLY_NAME_DETAIL.into(), ctx.friendly_name.clone());
        new.extended_details
            .insert(DATASOURCE_TYPE_DETAIL.into(), ctx.datasource_type.clone());
        new.extended_details.extend(details);
        new.scheduled = scheduled;
        new.policy_rule_name = Some(ctx.policy_rule_name.clone());
        new.retention_tag = Some(ctx.retention_tag.clone());
        let held = Held::nothing().lock(lock).instance(instance_lock);
        let run = JobRun::start(&self.history, &new, held).await?;
        req.job_id = run.id().to_string();
        let progress = Arc::new(Progress::default());
        let counters = || {
            (
                progress.bytes_read.load(Ordering::Relaxed),
                progress.bytes_stored.load(Ordering::Relaxed),
            )
        };
        let result = run
            .drive(
                backup(&vault, &req, &ctx, progress.clone(), run.steps()),
                counters,
            )
            .await;
        let (read, stored) = counters();
        let job = run
            .finish(
                result.as_ref().map(|m| Some(m.recovery_point_id.clone())),
                read,
                stored,
            )
            .await?;
        Ok((job, result.ok()))
    }

    /// The error of a backup refused because another backup of the instance holds its lock:
    /// Azure's code for it, naming the running job (from the lock, else from the history)
    /// and its process.
    fn backup_refused(&self, vault: &str, instance: &str, e: InstanceLockError) -> Error {
        let holder = match e {
            InstanceLockError::Running { holder, .. } => holder,
            InstanceLockError::Store(e) => {
                return pgvault_core::store::lock::LockError::Store(e).into();
            }
        };
        let job = holder.job.clone().or_else(|| {
            self.history
                .list(
                    &JobFilter::default()
                        .vault(vault)
                        .instance(instance)
                        .status(JobStatus::InProgress),
                )
                .ok()?
                .into_iter()
                .find(|j| {
                    matches!(
                        j.operation,
                        Operation::OnDemandBackup | Operation::ScheduledBackup
                    )
                })
                .map(|j| j.id.to_string())
        });
        let (named, show) = match &job {
            Some(id) => (
                format!("job {id}, "),
                format!(" (`pgvault job show --job-id {id}`)"),
            ),
            None => (String::new(), String::new()),
        };
        Error::new(
            ErrorCode::UserErrorMaxConcurrentOperationLimitReached,
            format!(
                "backup instance `{instance}` is already being backed up ({named}{}); wait for it to finish{show}",
                holder.holder.describe()
            ),
        )
    }

    /// Whether an on-demand backup of `instance` may start now, for callers that answer before
    /// the backup's job exists (the REST API's 409, the console): the instance is protected
    /// and no backup of it is running. The backup itself checks both again.
    pub async fn check_backup_allowed(&self, vault_name: &str, instance: &str) -> Result<()> {
        let vault = self.vault(vault_name).await?;
        pgvault_core::engine::backup::check_protected(&vault.instance(instance).await?)?;
        self.check_no_backup_running(vault.name(), instance)
    }

    /// At most one backup of an instance runs at a time, as in Azure: a second one is refused
    /// while the first one's job is in progress (a job whose process died was already marked
    /// failed when the history was opened).
    pub fn check_no_backup_running(&self, vault: &str, instance: &str) -> Result<()> {
        let running = self
            .history
            .list(
                &JobFilter::default()
                    .vault(vault)
                    .instance(instance)
                    .status(JobStatus::InProgress),
            )
            .map_err(history_err)?;
        if let Some(job) = running.iter().find(|j| {
            matches!(
                j.operation,
                Operation::OnDemandBackup | Operation::ScheduledBackup
            )
        }) {
            return Err(Error::new(
                ErrorCode::UserErrorMaxConcurrentOperationLimitReached,
                format!(
                    "backup instance `{instance}` is already being backed up (job {}, started {}); \
                     wait for it to finish (`pgvault job show --job-id {}`)",
                    job.id,
                    job.state.start().to_rfc3339(),
                    job.id
                ),
            ));
        }
        Ok(())
    }

    // ---- restore ----

    /// `restore trigger`: runs a restore request as a `Restore` job.
    pub async fn restore(
        &self,
        vault_name: &str,
        instance: &str,
        request: &RestoreRequest,
    ) -> Result<(Job, Option<RestoreOutcome>)> {
        self.restore_observed(vault_name, instance, request, Arc::default())
            .await
    }

    /// [`Self::restore`], counting the bytes read from the vault into `written` as it goes
    /// (for a progress display).
    pub async fn restore_observed(
        &self,
        vault_name: &str,
        instance: &str,
        request: &RestoreRequest,
        written: Arc<AtomicU64>,
    ) -> Result<(Job, Option<RestoreOutcome>)> {
        let vault = self.vault(vault_name).await?;
        let point = crate::arm::recovery_point_of(&vault, instance, &request.recovery_point_id)?;
        let bare;
        let request = if point == request.recovery_point_id {
            request
        } else {
            bare = RestoreRequest {
                recovery_point_id: point,
                ..request.clone()
            };
            &bare
        };
        let mut new = NewJob::new(
            Operation::Restore,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_string());
        new.recovery_point_id = Some(request.recovery_point_id.clone());
        let target = match &request.restore_target_info {
            RestoreTarget::Database {
                datasource_info, ..
            } => ("RestoreTarget", datasource_info.resource_id.clone()),
            RestoreTarget::Files { target_details, .. } => target_details.job_detail(),
        };
        new.extended_details.insert(target.0.to_string(), target.1);
        if let Ok(inst) = vault.instance(instance).await {
            new.describe_instance(&inst.properties);
        }
        // The point's time, for the job's `sourceRecoverPoint`; a point that cannot be read
        // here fails the restore itself, with its own error, so nothing is lost without it.
        if let Ok(point) = vault
            .stored_point(instance, &request.recovery_point_id)
            .await
        {
            new.extended_details.insert(
                RECOVERY_POINT_TIME_DETAIL.into(),
                azure_time(point.manifest().recovery_point_time),
            );
        }
        let lock = self
            .shared_lock(&vault.store, &format!("restore of {instance}"))
            .await?;
        let run = JobRun::start(&self.history, &new, Held::nothing().lock(lock)).await?;
        let result = run
            .drive(
                restore_with_steps(
                    &vault,
                    instance,
                    request,
                    written.clone(),
                    &self.leftovers(),
                    run.steps(),
                ),
                || (written.load(Ordering::Relaxed), 0),
            )
            .await;
        let read = written.load(Ordering::Relaxed);
        if let Ok(outcome) = &result {
            let mut details = outcome.job_details();
            if !outcome.warnings.is_empty() {
                details.push(("Warning".into(), outcome.warnings.join(" ")));
            }
            if let Err(e) = run.set_details(&details) {
                tracing::warn!(job = %run.id(), error = %e.message, "could not record the restore's outcome");
            }
        }
        let result = result.map_err(|e| {
            self.explain_missing_point(vault.name(), instance, &request.recovery_point_id, e)
        });
        let job = run.finish(result.as_ref().map(|_| None), read, 0).await?;
        Ok((job, result.ok()))
    }

    // ---- jobs ----

    /// Deletes finished jobs that started more than `keep` before `now`; returns how many.
    pub fn prune_history(
        &self,
        now: DateTime<Utc>,
        keep: &pgvault_core::model::duration::IsoDuration,
    ) -> Result<usize> {
        let cutoff = pgvault_core::model::job::retention_cutoff(now, keep);
        self.history.prune(cutoff).map_err(history_err)
    }

    /// Per vault and instance, how many of the jobs `filter` matches are in each status (its
    /// limit aside), counted by the history itself.
    pub fn job_summary(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<pgvault_core::model::job::JobSummaryRow>> {
        self.history.summary(filter).map_err(history_err)
    }

    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.history.list(filter).map_err(history_err)
    }

    pub fn job(&self, id: &str) -> Result<Job> {
        let parsed: JobId = id.parse().map_err(|_| {
            Error::new(
                ErrorCode::UserErrorInvalidJobId,
                format!("`{id}` is not a job id (a UUID, as `job list` shows)"),
            )
        })?;
        self.history
            .get(parsed)
            .map_err(history_err)?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UserErrorJobNotFound,
                    format!("no job `{id}` in the job history"),
                )
            })
    }
}

/// Removes the staging databases, scratch databases and partial files that restores and
/// drills of processes now gone left behind (recorded under the home's `pending/`), and logs
/// what was removed, or why a leftover stays. Every command calls it when it starts.
pub async fn clean_leftovers(home: &Home) -> Vec<Cleaned> {
    let cleaned = Leftovers::in_home(home.dir()).clean().await;
    for c in &cleaned {
        let what = c.record.leftover.describe();
        match &c.outcome {
            Ok(()) => tracing::warn!(
                operation = %c.record.operation,
                pid = c.record.pid,
                "removed the {what} left by an interrupted {} (pid {})",
                c.record.operation,
                c.record.pid
            ),
            Err(reason) => tracing::warn!(
                operation = %c.record.operation,
                pid = c.record.pid,
                record = %home.dir().join("pending").join(format!("{}.json", c.record.id)).display(),
                "could not remove the {what} left by an interrupted {} (pid {}): {reason}; pgvault tries again at its next start",
                c.record.operation,
                c.record.pid
            ),
        }
    }
    cleaned
}

fn not_encrypted(vault: &str) -> Error {
    Error::new(
        ErrorCode::UserErrorVaultNotEncrypted,
        format!(
            "vault `{vault}` is not encrypted: it has no keys. Encryption is chosen when a vault is \
             created (`backup-vault create --encryption-key-uri`)"
        ),
    )
}

/// A key slot as `backup-vault key` commands print it.
fn key_slot_json(slot: &pgvault_core::store::crypt::KeySlot) -> Value {
    let mut v = serde_json::json!({
        "id": slot.id,
        "source": slot.source.as_str(),
        "reference": slot.reference,
        "createdTime": slot.created_time,
    });
    if let Some(kid) = &slot.key_vault_kid {
        v["keyVaultKeyId"] = kid.clone().into();
    }
    if let Some(kdf) = &slot.kdf {
        v["kdf"] = serde_json::json!({
            "algorithm": kdf.algorithm,
            "memoryKiB": kdf.memory_kib,
            "iterations": kdf.iterations,
            "parallelism": kdf.parallelism,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_core::model::instance::PROTECTION_CONFIGURED;

    /// A history error reaches the caller as `JobHistoryError` with the history's own error as
    /// its source.
    #[test]
    fn a_history_error_keeps_its_cause() {
        let e = history_err(crate::history::HistoryError::ByteCountTooLarge(u64::MAX));
        assert_eq!(e.code, ErrorCode::JobHistoryError);
        let source = std::error::Error::source(&e).expect("the history error");
        assert!(matches!(
            source.downcast_ref::<crate::history::HistoryError>(),
            Some(crate::history::HistoryError::ByteCountTooLarge(u64::MAX))
        ));
    }

    /// A clock that always says the same time.
    struct Fixed(DateTime<Utc>);

    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    /// The service reads the time only from its clock: a vault it creates and a job it
    /// records on demand carry the clock's time, not the wall clock's.
    #[tokio::test]
    async fn on_demand_operations_take_their_time_from_the_service_clock() {
        let at: DateTime<Utc> = "2031-05-06T07:08:09Z".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open_with_clock(Home::at(dir.path().join("home")), Arc::new(Fixed(at)))
            .unwrap();
        assert_eq!(svc.now(), at);
        let url = format!("file://{}", dir.path().join("vault").display());
        let vault = svc
            .create_vault("V", &Default::default(), Some(&url))
            .await
            .unwrap();
        assert_eq!(vault["properties"]["createdTime"], serde_json::json!(at));
        let instance = serde_json::json!({
            "name": "db1",
            "properties": {
                "dataSourceInfo": {"datasourceType": "x", "resourceID": "postgres://h:5432/db1", "resourceName": "db1"},
                "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:X"}},
                "policyInfo": {"policyId": "P"},
                "currentProtectionState": "ProtectionConfigured"
            }
        });
        svc.vault("V")
            .await
            .unwrap()
            .store
            .put_json(&pgvault_core::store::paths::instance("db1"), &instance)
            .await
            .unwrap();
        svc.set_protection_state("V", "db1", "BackupSchedulesSuspended")
            .await
            .unwrap();
        let jobs = svc.jobs(&JobFilter::default().instance("db1")).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].state.start(), at);
    }

    #[tokio::test]
    async fn protection_state_changes_are_recorded_and_resume_restarts_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let url = format!("file://{}", dir.path().join("vault").display());
        svc.create_vault("V", &Default::default(), Some(&url))
            .await
            .unwrap();
        let vault = svc.vault("V").await.unwrap();
        let instance = serde_json::json!({
            "name": "db1",
            "properties": {
                "dataSourceInfo": {"datasourceType": "x", "resourceID": "postgres://h:5432/db1", "resourceName": "db1"},
                "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"secretStoreType": "Environment", "uri": "env:X"}},
                "policyInfo": {"policyId": "P"},
                "currentProtectionState": "ProtectionConfigured"
            }
        });
        vault
            .store
            .put_json(&pgvault_core::store::paths::instance("db1"), &instance)
            .await
            .unwrap();
        let configure = || {
            svc.jobs(
                &JobFilter::default()
                    .instance("db1")
                    .operation(Operation::ConfigureBackup),
            )
            .unwrap()
        };
        svc.set_protection_state("V", "db1", "BackupSchedulesSuspended")
            .await
            .unwrap();
        // The same state again changes nothing and records nothing.
        svc.set_protection_state("V", "db1", "BackupSchedulesSuspended")
            .await
            .unwrap();
        let resumed = svc
            .set_protection_state("V", "db1", PROTECTION_CONFIGURED)
            .await
            .unwrap();
        assert_eq!(
            resumed["properties"]["currentProtectionState"],
            PROTECTION_CONFIGURED
        );
        let jobs = configure();
        let states: Vec<&str> = jobs
            .iter()
            .map(|j| j.extended_details["ProtectionState"].as_str())
            .collect();
        assert_eq!(states, [PROTECTION_CONFIGURED, "BackupSchedulesSuspended"]);
        assert!(jobs.iter().all(|j| j.status() == JobStatus::Completed));
    }

    #[tokio::test]
    async fn a_job_whose_operation_is_dropped_ends_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let mut new = NewJob::new(Operation::OnDemandBackup, "V", Utc::now(), current_owner());
        new.backup_instance_name = Some("db1".into());
        let running = JobRun::start(&svc.history, &new, Held::nothing())
            .await
            .unwrap();
        let running_id = running.id();
        let finished = JobRun::start(
            &svc.history,
            &NewJob::new(Operation::Restore, "V", Utc::now(), current_owner()),
            Held::nothing(),
        )
        .await
        .unwrap();
        let finished_id = finished.id();
        // Dropped before the operation finished its job: Cancelled.
        drop(running);
        // Finished: the operation's outcome stands.
        finished.finish(Ok(None), 0, 0).await.unwrap();
        assert_eq!(
            svc.job(&running_id.to_string()).unwrap().status(),
            JobStatus::Cancelled
        );
        assert_eq!(
            svc.job(&finished_id.to_string()).unwrap().status(),
            JobStatus::Completed
        );
    }

    #[tokio::test]
    async fn a_panic_in_an_operation_fails_its_job_instead_of_cancelling_it() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let new = || NewJob::new(Operation::Restore, "V", Utc::now(), current_owner());
        // A panic inside the operation's future is its error.
        let run = JobRun::start(&svc.history, &new(), Held::nothing())
            .await
            .unwrap();
        let out: Result<()> = run
            .drive(
                async {
                    let bytes = [1u8, 2, 3];
                    let end = std::hint::black_box(7);
                    let _ = &bytes[..end];
                    Ok(())
                },
                || (0, 0),
            )
            .await;
        let e = out.unwrap_err();
        assert_eq!(e.code.as_str(), "InternalError");
        assert!(e.message.contains("out of range"), "{}", e.message);
        let job = run.finish(Err(&e), 0, 0).await.unwrap();
        assert_eq!(job.status(), JobStatus::Failed);
        // A job whose run is dropped by a panic unwinding past it is Failed, not Cancelled.
        let run = JobRun::start(&svc.history, &new(), Held::nothing())
            .await
            .unwrap();
        let id = run.id();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _run = run;
            panic!("a bug");
        }));
        assert!(unwound.is_err());
        let job = svc.job(&id.to_string()).unwrap();
        assert_eq!(job.status(), JobStatus::Failed);
        let pgvault_core::model::job::JobState::Failed { error, .. } = &job.state else {
            panic!("{:?}", job.state)
        };
        assert_eq!(error.code.as_str(), "InternalError");
    }

    #[tokio::test]
    async fn a_second_backup_of_an_instance_is_refused_while_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let url = format!("file://{}", dir.path().join("vault").display());
        svc.create_vault("V", &Default::default(), Some(&url))
            .await
            .unwrap();
        // A backup of `db1` in progress, owned by this (live) process.
        let mut running = NewJob::new(Operation::ScheduledBackup, "V", Utc::now(), current_owner());
        running.backup_instance_name = Some("db1".into());
        let job = svc.history.start(&running).unwrap();

        let error = svc
            .adhoc_backup("V", "db1", "Default", None)
            .await
            .unwrap_err();
        assert_eq!(
            error.code.as_str(),
            "UserErrorMaxConcurrentOperationLimitReached"
        );
        assert!(
            error.message.contains(&job.id.to_string()),
            "{}",
            error.message
        );
        // Another instance is not blocked by it (it fails later, for its own reason).
        let other = svc
            .adhoc_backup("V", "db2", "Default", None)
            .await
            .unwrap_err();
        assert_eq!(other.code.as_str(), "UserErrorBackupInstanceNotFound");
        // Once the first one finishes, the instance is free again.
        svc.history
            .finish(
                job.id,
                &pgvault_core::model::job::JobOutcome::Completed {
                    recovery_point_id: None,
                },
                Utc::now(),
                0,
                0,
            )
            .unwrap();
        let error = svc
            .adhoc_backup("V", "db1", "Default", None)
            .await
            .unwrap_err();
        assert_eq!(error.code.as_str(), "UserErrorBackupInstanceNotFound");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backup_waits_a_bounded_time_for_garbage_collection() {
        let store = VaultStore::open("memory://").unwrap();
        let gc = VaultLock::acquire(&store, LockKind::Exclusive, "garbage collection")
            .await
            .unwrap();
        // Waiting nothing: refused at once, as before.
        let started = tokio::time::Instant::now();
        let err = wait_for_lock(&store, LockKind::Shared, "backup of db1", Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorVaultLocked");
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Waiting a minute on tokio's paused clock: refused after exactly that, saying so.
        let err = wait_for_lock(
            &store,
            LockKind::Shared,
            "backup of db1",
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(err.code.as_str(), "UserErrorVaultLocked");
        for part in ["garbage collection by pid", "waited 60 s", LOCK_WAIT_ENV] {
            assert!(
                err.message.contains(part),
                "`{part}` missing: {}",
                err.message
            );
        }
        // Garbage collection ending during the wait lets the backup go on.
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                wait_for_lock(
                    &store,
                    LockKind::Shared,
                    "backup of db1",
                    Duration::from_secs(600),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!waiter.is_finished());
        gc.release().await.unwrap();
        let lock = waiter.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60 + 100 + 16));
        lock.release().await.unwrap();
    }

    #[test]
    fn lock_waits_are_seconds_or_a_number_with_a_unit() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("90", Some(90)),
            ("90s", Some(90)),
            ("15m", Some(900)),
            (" 1h ", Some(3600)),
            ("", None),
            ("ten", None),
            ("5d", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            let got = parse_lock_wait(text).ok().map(|d| d.as_secs());
            assert_eq!(got, *expected, "{text:?}");
        }
        assert!(
            parse_lock_wait("5d")
                .unwrap_err()
                .contains("PGVAULT_LOCK_WAIT=`5d`")
        );
    }
}
