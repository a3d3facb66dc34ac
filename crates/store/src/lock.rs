//! Vault locks: many readers and writers, or one garbage collector.
//!
//! Garbage collection deletes packs no manifest references. A backup that started before it
//! may have found a chunk in one of those packs and be about to name it in its manifest; a
//! restore may be about to read it. So every operation that reads or writes chunks holds a
//! *shared* lock, and garbage collection holds the *exclusive* one, which no other lock may
//! coexist with (restic's scheme, which survives crashes and needs nothing from the store
//! but put, list and delete).
//!
//! A lock is an object `locks/<uuid>.json` naming its holder (host, pid, operation) and when
//! it was last refreshed. Taking one: drop stale locks, refuse when a conflicting live lock
//! exists, write ours, then list again and back off if a conflicting lock appeared meanwhile
//! (two takers may both back off; neither wins wrongly). A holder refreshes its lock every
//! [`REFRESH_EVERY`]; a lock is stale when its holder's process is gone (same host) or it was
//! not refreshed for [`STALE_AFTER`] (another host, which may have died). A killed process
//! therefore never blocks a vault for long, and a crash never needs a manual unlock.
//!
//! A third kind, [`LockKind::Destructive`], conflicts only with itself: it is how a vault on
//! the local filesystem gives the retention sweep, garbage collection and deletions one at a
//! time (see [`super::lease`], which on Blob Storage uses a blob lease instead). Unlike the
//! other kinds, its refresher never recreates an object someone removed (`break-lock`): the
//! holder notices through [`super::lease::DestructiveGuard::ensure_held`] and stops.
//!
//! [`InstanceLock`] is a fourth: one backup per instance at a time, across processes and
//! hosts. Its objects live apart, under `locks/instances/<instance>/`, and are taken by
//! *creating* an object only if it is absent (`PutMode::Create`, which the local store and
//! Blob Storage both honour), so of two backups started at the same instant exactly one wins;
//! see [`InstanceLock`] for how a dead holder's lock is taken over without a race.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{StoreError, VaultStore};
use pgvault_os::process::{local_host_name, process_alive};

/// How often a held lock is rewritten with a fresh time.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock from another host not refreshed for this long is taken to be left by a dead process.
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LockKind {
    /// Backups, restores, archive moves, recovery-point deletions: they coexist.
    Shared,
    /// Garbage collection: alone.
    Exclusive,
    /// Retention sweeps, garbage collection and deletions on a local vault: one at a time,
    /// whatever else runs (see [`super::lease`]).
    Destructive,
    /// One backup of an instance ([`InstanceLock`]); never among the vault locks above.
    Instance,
}

/// The content of a lock object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    pub kind: LockKind,
    pub host: String,
    pub pid: u32,
    /// What the holder is doing, for the message another process shows.
    pub operation: String,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl LockInfo {
    /// This process as a holder of `kind` for `operation`, from `now`.
    pub fn this_process(kind: LockKind, operation: &str, now: DateTime<Utc>) -> LockInfo {
        LockInfo {
            kind,
            host: local_host_name(),
            pid: std::process::id(),
            operation: operation.to_owned(),
            created: now,
            refreshed: now,
        }
    }

    fn conflicts_with(&self, kind: LockKind) -> bool {
        match (self.kind, kind) {
            (LockKind::Instance, _) | (_, LockKind::Instance) => false,
            (LockKind::Destructive, LockKind::Destructive) => true,
            (LockKind::Destructive, _) | (_, LockKind::Destructive) => false,
            (a, b) => a == LockKind::Exclusive || b == LockKind::Exclusive,
        }
    }

    /// Whether the holder is gone: a dead process on this host, or no refresh for a long time.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        (self.host == local_host_name() && !process_alive(self.pid))
            || now - self.refreshed > STALE_AFTER
    }

    /// `operation by pid N on host since time`, for messages naming the holder.
    pub fn describe(&self) -> String {
        format!(
            "{} by pid {} on {} since {}",
            self.operation,
            self.pid,
            self.host,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the vault is locked ({holder}); {kind_hint} Try again when it has finished, or, if that \
         process is gone, in {} minutes, when its lock goes stale",
        STALE_AFTER.num_minutes()
    )]
    Locked {
        holder: String,
        kind_hint: &'static str,
    },
    /// Another process runs a destructive operation (see [`super::lease`]).
    #[error(
        "vault `{vault}` is busy with another destructive operation ({holder}): retention \
         sweeps, garbage collection and deletions run one at a time. Try again when it has \
         finished; {remedy}"
    )]
    Busy {
        vault: String,
        holder: String,
        remedy: String,
    },
    /// The destructive-operation lease or lock this process held is gone (broken by an
    /// operator, or expired while renewals failed).
    #[error(
        "this process no longer holds the destructive-operation {what} of vault `{vault}` \
         ({reason}), so it stopped before deleting anything more; run the operation again"
    )]
    Lost {
        vault: String,
        what: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] super::blob_rest::BlobError),
}

fn lock_path(id: &str) -> Path {
    Path::from(format!("locks/{id}.json"))
}

/// The live locks of a vault, deleting stale ones on the way (they belong to dead processes).
pub async fn live_locks(
    store: &VaultStore,
    now: DateTime<Utc>,
) -> Result<Vec<(Path, LockInfo)>, StoreError> {
    let mut out = Vec::new();
    for path in store.list(&Path::from("locks")).await? {
        // The destructive-operation lease blob (`super::lease`) lives here too; it is not a
        // lock object.
        if !path.as_ref().ends_with(".json") {
            continue;
        }
        // Instance locks (`locks/instances/...`) follow their own rules: see `InstanceLock`.
        if path.parts().count() != 2 {
            continue;
        }
        let info: LockInfo = match store.get_record(&path).await {
            Ok(info) => info,
            // Released between the list and the read.
            Err(e) if e.is_not_found() => continue,
            // A torn or foreign object under locks/ is not a lock anyone holds.
            Err(StoreError::Json { .. } | StoreError::Sealed { .. }) => {
                tracing::warn!(lock = %path, "removing an unreadable lock object");
                let _ = store.delete(&path).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if info.is_stale(now) {
            tracing::warn!(lock = %path, holder = %info.describe(), "removing a stale vault lock");
            store.delete_if_present(&path).await?;
            continue;
        }
        out.push((path, info));
    }
    Ok(out)
}

/// A held lock. Refreshed in the background while held; [`VaultLock::release`] removes it.
/// Dropped without `release` (a cancelled operation), it is removed by a background task.
#[derive(Debug)]
pub struct VaultLock {
    store: VaultStore,
    path: Path,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl VaultLock {
    /// Takes a lock of `kind` for `operation`, or says who holds the conflicting one.
    pub async fn acquire(
        store: &VaultStore,
        kind: LockKind,
        operation: &str,
    ) -> Result<VaultLock, LockError> {
        let now = Utc::now();
        check_conflicts(store, kind, None, now).await?;
        let info = LockInfo::this_process(kind, operation, now);
        let path = lock_path(&uuid::Uuid::new_v4().simple().to_string());
        store.put_record(&path, &info).await?;
        if let Err(e) = check_conflicts(store, kind, Some(&path), now).await {
            let _ = store.delete(&path).await;
            return Err(e);
        }
        let refresher = {
            let (store, path) = (store.clone(), path.clone());
            let info = Arc::new(info);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(REFRESH_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    // A destructive lock someone removed stays removed: its holder must stop.
                    if kind == LockKind::Destructive && !store.exists(&path).await.unwrap_or(true) {
                        tracing::warn!(lock = %path, "the destructive-operation lock was removed");
                        break;
                    }
                    let mut fresh = (*info).clone();
                    fresh.refreshed = Utc::now();
                    if let Err(e) = store.put_record(&path, &fresh).await {
                        tracing::warn!(lock = %path, error = %e, "could not refresh the vault lock");
                    }
                }
            })
        };
        Ok(VaultLock {
            store: store.clone(),
            path,
            refresher: Some(refresher),
        })
    }

    /// The lock's object, `locks/<uuid>.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock's object is still there (an operator may have removed it).
    pub async fn is_present(&self) -> Result<bool, StoreError> {
        self.store.exists(&self.path).await
    }

    /// Removes the lock.
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.store.delete_if_present(&self.path).await
    }
}

impl Drop for VaultLock {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
            let (store, path) = (self.store.clone(), self.path.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = store.delete(&path).await;
                });
            }
        }
    }
}

async fn check_conflicts(
    store: &VaultStore,
    kind: LockKind,
    ours: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<(), LockError> {
    let live = live_locks(store, now).await?;
    if let Some((_, other)) = live
        .iter()
        .find(|(path, info)| Some(path) != ours && info.conflicts_with(kind))
    {
        return Err(LockError::Locked {
            holder: other.describe(),
            kind_hint: match other.kind {
                LockKind::Exclusive => {
                    "garbage collection removes unreferenced data and runs alone."
                }
                LockKind::Shared => {
                    "garbage collection waits until no backup, restore or archive move is running."
                }
                LockKind::Destructive => {
                    "retention sweeps, garbage collection and deletions run one at a time."
                }
                LockKind::Instance => "",
            },
        });
    }
    Ok(())
}

/// What an instance lock object holds: its holder, the job it runs once that is known, and
/// whether it was released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHolder {
    #[serde(flatten)]
    pub holder: LockInfo,
    /// The holder's job id (decided before the lock is taken, so a refusal can name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub released: bool,
}

impl InstanceHolder {
    fn is_free(&self, now: DateTime<Utc>) -> bool {
        self.released || self.holder.is_stale(now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    /// Another backup of the instance holds the lock.
    #[error("backup instance `{instance}` is already being backed up ({})", .holder.holder.describe())]
    Running {
        instance: String,
        holder: Box<InstanceHolder>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many times [`InstanceLock::acquire`] starts over when the objects changed under it (a
/// competitor won a generation, or cleaned one away) before it gives up.
const INSTANCE_LOCK_ATTEMPTS: usize = 8;

/// One backup of an instance at a time: a lock taken by creating an object that must not exist.
///
/// The objects are *generations*, `locks/instances/<instance>/<n>.json`. The holder of an
/// instance is the highest generation, unless that one says it was released or its holder is
/// gone (stale by [`LockInfo::is_stale`]'s rules). Taking the lock: list the generations, refuse
/// if the highest is held, else create generation `n + 1` with `PutMode::Create`. Of two takers
/// that saw the same `n`, the store lets exactly one create `n + 1`; the other starts over,
/// sees it held and is refused. After creating, the taker lists once more and backs off if a
/// higher generation exists (a taker that saw an old listing can only create a generation
/// below the newest), then deletes the generations below its own. A release rewrites the
/// object as released instead of deleting it, so the newest generation always exists and no
/// late taker can create it a second time.
///
/// A dead holder's lock is thus never deleted and recreated under the same name (two takers
/// could both do that and both win); it is superseded by the next generation.
#[derive(Debug)]
pub struct InstanceLock {
    store: VaultStore,
    path: Path,
    info: Arc<std::sync::Mutex<InstanceHolder>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

fn instance_lock_dir(instance: &str) -> Path {
    Path::from("locks/instances").child(instance)
}

fn generation_of(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

impl InstanceLock {
    /// Takes the backup lock of `instance` for `operation` (the job `job`), or says which
    /// backup holds it.
    pub async fn acquire(
        store: &VaultStore,
        instance: &str,
        operation: &str,
        job: Option<&str>,
    ) -> Result<InstanceLock, InstanceLockError> {
        let dir = instance_lock_dir(instance);
        let generations = |paths: Vec<Path>| -> Vec<(u64, Path)> {
            let mut out: Vec<(u64, Path)> = paths
                .into_iter()
                .filter_map(|p| Some((generation_of(&p)?, p)))
                .collect();
            out.sort_by_key(|(g, _)| *g);
            out
        };
        for _ in 0..INSTANCE_LOCK_ATTEMPTS {
            let now = Utc::now();
            let seen = generations(store.list(&dir).await?);
            let next = match seen.last() {
                None => 1,
                Some((newest, path)) => {
                    match store.get_record::<InstanceHolder>(path).await {
                        Ok(holder) if !holder.is_free(now) => {
                            return Err(InstanceLockError::Running {
                                instance: instance.to_owned(),
                                holder: Box::new(holder),
                            });
                        }
                        Ok(_) => {}
                        // Superseded and cleaned away meanwhile: look again.
                        Err(e) if e.is_not_found() => continue,
                        // A torn object is no holder; the next generation supersedes it.
                        Err(StoreError::Json { .. } | StoreError::Sealed { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    newest + 1
                }
            };
            let info = InstanceHolder {
                holder: LockInfo::this_process(LockKind::Instance, operation, now),
                job: job.map(str::to_owned),
                released: false,
            };
            let path = dir.child(format!("{next:020}.json"));
            let bytes = serde_json::to_vec(&info).map_err(|source| StoreError::Json {
                path: path.to_string(),
                source,
            })?;
            let bytes = crate::seal_record(store.sealer(), bytes);
            let created = store
                .inner
                .put_opts(
                    &path,
                    object_store::PutPayload::from(bytes),
                    object_store::PutMode::Create.into(),
                )
                .await;
            match created {
                Ok(_) => {}
                // Another taker created this generation first: look again.
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        path: path.to_string(),
                        source,
                    }
                    .into());
                }
            }
            let after = generations(store.list(&dir).await?);
            if after.iter().any(|(g, _)| *g > next) {
                // We created a generation below the newest from an old listing: not ours.
                let _ = store.delete(&path).await;
                continue;
            }
            for (_, older) in after.iter().filter(|(g, _)| *g < next) {
                if let Err(e) = store.delete_if_present(older).await {
                    tracing::warn!(lock = %older, error = %e, "could not remove a superseded instance lock");
                }
            }
            let info = Arc::new(std::sync::Mutex::new(info));
            let refresher = {
                let (store, path, info) = (store.clone(), path.clone(), info.clone());
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(REFRESH_EVERY);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        let fresh = {
                            let mut info = info.lock().unwrap_or_else(|p| p.into_inner());
                            info.holder.refreshed = Utc::now();
                            info.clone()
                        };
                        if let Err(e) = store.put_record(&path, &fresh).await {
                            tracing::warn!(lock = %path, error = %e, "could not refresh the instance lock");
                        }
                    }
                })
            };
            return Ok(InstanceLock {
                store: store.clone(),
                path,
                info,
                refresher: Some(refresher),
            });
        }
        Err(StoreError::Io {
            path: dir.to_string(),
            source: object_store::Error::Generic {
                store: "instance lock",
                source: format!(
                    "the backup lock of `{instance}` changed {INSTANCE_LOCK_ATTEMPTS} times while \
                     it was being taken; try again"
                )
                .into(),
            },
        }
        .into())
    }

    /// The lock's object.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the lock up: its object is rewritten as released (never deleted, see above).
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let info = self.released();
        self.store.put_record(&self.path, &info).await
    }

    fn released(&self) -> InstanceHolder {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
        info.released = true;
        info
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
            let (store, path, info) = (self.store.clone(), self.path.clone(), self.released());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = store.put_record(&path, &info).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> VaultStore {
        VaultStore::open("memory://").unwrap()
    }

    #[tokio::test]
    async fn shared_locks_coexist_and_exclude_the_exclusive_one() {
        let store = memory();
        let a = VaultLock::acquire(&store, LockKind::Shared, "backup")
            .await
            .unwrap();
        let b = VaultLock::acquire(&store, LockKind::Shared, "restore")
            .await
            .unwrap();
        let err = VaultLock::acquire(&store, LockKind::Exclusive, "garbage collection")
            .await
            .unwrap_err();
        let holder = err.to_string();
        assert!(
            holder.contains("backup by pid") || holder.contains("restore by pid"),
            "{holder}"
        );
        a.release().await.unwrap();
        b.release().await.unwrap();
        let gc = VaultLock::acquire(&store, LockKind::Exclusive, "garbage collection")
            .await
            .unwrap();
        let err = VaultLock::acquire(&store, LockKind::Shared, "backup")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("garbage collection"), "{err}");
        gc.release().await.unwrap();
        assert!(live_locks(&store, Utc::now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn locks_of_dead_or_silent_holders_are_stale() {
        let store = memory();
        let now = Utc::now();
        let dead = LockInfo {
            kind: LockKind::Exclusive,
            host: local_host_name(),
            // Larger than any pid Linux hands out (pid_max is at most 2^22).
            pid: u32::MAX - 1,
            operation: "garbage collection".into(),
            created: now,
            refreshed: now,
        };
        store.put_json(&lock_path("dead"), &dead).await.unwrap();
        let silent = LockInfo {
            host: "another-host".into(),
            pid: 1,
            refreshed: now - STALE_AFTER - chrono::TimeDelta::seconds(1),
            ..dead.clone()
        };
        store.put_json(&lock_path("silent"), &silent).await.unwrap();
        let alive_elsewhere = LockInfo {
            kind: LockKind::Shared,
            host: "another-host".into(),
            pid: 1,
            ..dead.clone()
        };
        store
            .put_json(&lock_path("alive"), &alive_elsewhere)
            .await
            .unwrap();
        let live = live_locks(&store, now).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, alive_elsewhere);
        // The stale ones were removed from the store.
        assert_eq!(store.list(&Path::from("locks")).await.unwrap().len(), 1);
        // A shared lock is granted next to the live shared one; an exclusive one is not.
        VaultLock::acquire(&store, LockKind::Shared, "backup")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        assert!(
            VaultLock::acquire(&store, LockKind::Exclusive, "gc")
                .await
                .is_err()
        );
    }

    fn local() -> (tempfile::TempDir, VaultStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::open(&format!("file://{}", dir.path().display())).unwrap();
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_many_backups_of_an_instance_started_at_once_exactly_one_takes_the_lock() {
        let (_dir, store) = local();
        for round in 0..10 {
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let takers: Vec<_> = (0..8)
                .map(|i| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        InstanceLock::acquire(&store, "db1", &format!("backup {i}"), None).await
                    })
                })
                .collect();
            let mut held = Vec::new();
            for t in takers {
                match t.await.unwrap() {
                    Ok(lock) => held.push(lock),
                    Err(InstanceLockError::Running { instance, .. }) => assert_eq!(instance, "db1"),
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(held.len(), 1, "round {round}: {} holders", held.len());
            held.pop().unwrap().release().await.unwrap();
        }
        // One released generation is all that is left.
        let left = store.list(&instance_lock_dir("db1")).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        // Other instances and the vault locks are not affected.
        InstanceLock::acquire(&store, "db2", "backup", None)
            .await
            .unwrap();
        assert!(live_locks(&store, Utc::now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_backup_is_told_the_holders_job_and_a_dead_holder_is_superseded() {
        let (_dir, store) = local();
        let first = InstanceLock::acquire(&store, "db1", "backup of db1", Some("job-1"))
            .await
            .unwrap();
        match InstanceLock::acquire(&store, "db1", "backup of db1", None).await {
            Err(InstanceLockError::Running { holder, .. }) => {
                assert_eq!(holder.job.as_deref(), Some("job-1"));
                assert_eq!(holder.holder.pid, std::process::id());
            }
            other => panic!("{other:?}"),
        }
        // The holder dies without releasing: its object says so by its pid.
        let mut dead: InstanceHolder = store.get_json(first.path()).await.unwrap();
        dead.holder.pid = u32::MAX - 1;
        store.put_json(first.path(), &dead).await.unwrap();
        let mut first = first;
        first.refresher.take().unwrap().abort();
        drop(first);
        let next = InstanceLock::acquire(&store, "db1", "backup of db1", None)
            .await
            .unwrap();
        assert!(next.path().as_ref().ends_with("00000000000000000002.json"));
        // A taker that listed before `next` and now creates generation 2 loses; one that
        // creates the superseded generation 1 again backs off after its second listing.
        let stale = instance_lock_dir("db1").child(format!("{:020}.json", 1));
        store.put_json(&stale, &dead).await.unwrap();
        assert!(matches!(
            InstanceLock::acquire(&store, "db1", "x", None).await,
            Err(InstanceLockError::Running { .. })
        ));
        next.release().await.unwrap();
        InstanceLock::acquire(&store, "db1", "backup of db1", None)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}
