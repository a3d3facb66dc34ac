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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{StoreError, VaultStore};
use crate::process::{local_host_name, process_alive};

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
        let info: LockInfo = match store.get_json(&path).await {
            Ok(info) => info,
            // Released between the list and the read.
            Err(e) if e.is_not_found() => continue,
            // A torn or foreign object under locks/ is not a lock anyone holds.
            Err(StoreError::Json { .. }) => {
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
        store.put_json(&path, &info).await?;
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
                    if let Err(e) = store.put_json(&path, &fresh).await {
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
            },
        });
    }
    Ok(())
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
}
