//! The destructive-operation guard: one retention sweep, garbage collection or deletion per
//! vault at a time, across processes and hosts.
//!
//! The shared and exclusive locks of [`super::lock`] keep garbage collection away from
//! backups and restores, but two sweeps both take shared locks, so two hosts could expire and
//! collect the same vault at once. Each would be correct alone; together they delete from
//! under each other and record every deletion twice. So the operations that delete take a
//! [`DestructiveGuard`] for their whole run, and a second one is refused at once with the
//! holder named (host, pid, operation, since when) and what to do.
//!
//! - **On Blob Storage** the guard is a lease on the blob [`LEASE_BLOB`] (created if
//!   missing), [`LEASE_DURATION`] long with a fresh UUID as its id, renewed every
//!   [`RENEW_EVERY`] in the background and released with the guard. Blob Storage itself
//!   grants the lease to one taker, so no listing race exists, and a crashed holder's lease
//!   expires within a minute: no staleness guesswork and no manual unlock. Right after
//!   acquiring, the holder writes its [`LockInfo`] into the blob (with `x-ms-lease-id`; a
//!   leased blob can still be read), which is what a refused process shows.
//! - **On a local vault** the guard is a lock object of kind [`LockKind::Destructive`],
//!   which conflicts only with itself and goes stale by the usual rules (a dead pid on this
//!   host, or 30 minutes without refresh from another).
//!
//! A holder can lose the guard without knowing: an operator breaks the lease
//! (`backup-vault break-lock`), or renewals fail until the lease expires and another host
//! takes it. Deleting code therefore calls [`DestructiveGuard::ensure_held`] before each
//! deletion; it fails once a renewal was refused, once the last confirmed renewal is older
//! than the lease minus a margin (the lease may have expired), or, on a local vault, once
//! the lock object is gone.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;

use super::VaultStore;
use super::blob_rest::{BlobError, BlobRest};
use super::lock::{LockError, LockInfo, LockKind, STALE_AFTER, VaultLock, live_locks};
use crate::crypt::Sealer;

/// The blob whose lease is the guard on Blob Storage. It is not a lock object: `live_locks`
/// reads only `locks/*.json`.
pub const LEASE_BLOB: &str = "locks/destructive.lease";
/// How long a lease lasts without renewal (Blob Storage allows 15 to 60 seconds): how long a
/// crashed holder blocks the vault.
pub const LEASE_DURATION: Duration = Duration::from_secs(60);
/// How often a held lease is renewed: three chances before it would expire.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// [`DestructiveGuard::ensure_held`] gives up this long before the lease could expire
/// unrenewed, for the clock drift between this host and Blob Storage and the time a deletion
/// takes.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// A lease's duration and renewal period: [`LEASE_DURATION`] and [`RENEW_EVERY`], shorter in
/// tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration: LEASE_DURATION,
            renew_every: RENEW_EVERY,
        }
    }
}

/// What the renewer last learnt about a lease.
#[derive(Clone, Debug)]
struct LeaseStatus {
    /// When the last successful acquire or renew was sent: the lease runs at least until
    /// this plus its duration.
    confirmed: Instant,
    renewals: u64,
    /// Why the lease is known to be lost.
    lost: Option<String>,
}

impl LeaseStatus {
    /// Whether a lease of `duration` in this state is still ours at `now`: not known lost,
    /// and confirmed recently enough that it cannot have expired (less [`EXPIRY_MARGIN`]).
    fn check(&self, duration: Duration, now: Instant) -> Result<(), String> {
        if let Some(reason) = &self.lost {
            return Err(reason.clone());
        }
        let since = now.saturating_duration_since(self.confirmed);
        if since >= duration.saturating_sub(EXPIRY_MARGIN) {
            return Err(format!(
                "it was last renewed {} seconds ago and may have expired",
                since.as_secs()
            ));
        }
        Ok(())
    }
}

/// A held destructive-operation guard. Release it with [`DestructiveGuard::release`];
/// dropped without it (a cancelled operation), it is released by a background task, as a
/// [`VaultLock`] is.
#[derive(Debug)]
pub struct DestructiveGuard {
    vault: String,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Lease(Box<Lease>),
    Lock(Box<VaultLock>),
}

struct Lease {
    rest: BlobRest,
    id: String,
    timing: LeaseTiming,
    status: watch::Receiver<LeaseStatus>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl DestructiveGuard {
    /// Takes the guard of the vault `vault` (its name, for messages) stored in `store` for
    /// `operation`, or says who holds it and what to do.
    pub async fn acquire(
        store: &VaultStore,
        vault: &str,
        operation: &str,
    ) -> Result<DestructiveGuard, LockError> {
        match store.blob_rest() {
            Some(rest) => {
                Self::acquire_lease(
                    rest,
                    store.sealer(),
                    vault,
                    operation,
                    LeaseTiming::default(),
                )
                .await
            }
            None => Self::acquire_lock(store, vault, operation).await,
        }
    }

    /// The guard of a vault on Blob Storage: a lease on [`LEASE_BLOB`] with `timing`.
    pub async fn acquire_lease(
        rest: &BlobRest,
        sealer: Option<&Sealer>,
        vault: &str,
        operation: &str,
        timing: LeaseTiming,
    ) -> Result<DestructiveGuard, LockError> {
        let id = uuid::Uuid::new_v4().to_string();
        let seconds = i32::try_from(timing.duration.as_secs()).unwrap_or(60);
        let mut created = false;
        let confirmed = loop {
            let sent = Instant::now();
            match rest.acquire_lease(LEASE_BLOB, seconds, &id).await {
                Ok(()) => break sent,
                Err(e) if e.status == Some(404) && !created => {
                    created = true;
                    match rest.put_blob(LEASE_BLOB, Bytes::new(), &[]).await {
                        // Another taker created and leased it meanwhile: our acquire then
                        // fails as any second taker's does.
                        Err(e) if e.status == Some(412) || e.status == Some(409) => {}
                        other => other?,
                    }
                }
                Err(e) if e.is("LeaseAlreadyPresent") => {
                    return Err(LockError::Busy {
                        vault: vault.to_owned(),
                        holder: lease_holder(rest, sealer).await,
                        remedy: format!(
                            "if that process is gone, its lease expires by itself within {} \
                             seconds, or end it now with `pgvault backup-vault break-lock \
                             --vault-name {vault} --yes`",
                            timing.duration.as_secs()
                        ),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        let info = LockInfo::this_process(LockKind::Destructive, operation, Utc::now());
        let body = crate::seal_record(
            sealer,
            serde_json::to_vec(&info).expect("lock info serializes"),
        );
        if let Err(e) = rest
            .put_blob(LEASE_BLOB, body.into(), &[("x-ms-lease-id", &id)])
            .await
        {
            let _ = rest.release_lease(LEASE_BLOB, &id).await;
            return Err(e.into());
        }
        let (tx, status) = watch::channel(LeaseStatus {
            confirmed,
            renewals: 0,
            lost: None,
        });
        let renewer = tokio::spawn(renew(rest.clone(), id.clone(), timing.renew_every, tx));
        Ok(DestructiveGuard {
            vault: vault.to_owned(),
            held: Held::Lease(Box::new(Lease {
                rest: rest.clone(),
                id,
                timing,
                status,
                renewer: Some(renewer),
            })),
        })
    }

    async fn acquire_lock(
        store: &VaultStore,
        vault: &str,
        operation: &str,
    ) -> Result<DestructiveGuard, LockError> {
        match VaultLock::acquire(store, LockKind::Destructive, operation).await {
            Ok(lock) => Ok(DestructiveGuard {
                vault: vault.to_owned(),
                held: Held::Lock(Box::new(lock)),
            }),
            Err(LockError::Locked { holder, .. }) => Err(LockError::Busy {
                vault: vault.to_owned(),
                holder,
                remedy: format!(
                    "if that process is gone, its lock goes stale (at once when it ran on this \
                     host, else after {} minutes), or remove it now with `pgvault backup-vault \
                     break-lock --vault-name {vault} --yes`",
                    STALE_AFTER.num_minutes()
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// Fails when this process may no longer hold the guard; called before each deletion, so
    /// a holder that lost it stops deleting. On Blob Storage this makes no request.
    pub async fn ensure_held(&self) -> Result<(), LockError> {
        let lost = |what, reason: String| LockError::Lost {
            vault: self.vault.clone(),
            what,
            reason,
        };
        match &self.held {
            Held::Lease(lease) => {
                let status = lease.status.borrow().clone();
                status
                    .check(lease.timing.duration, Instant::now())
                    .map_err(|reason| lost("lease", reason))
            }
            Held::Lock(lock) => match lock.is_present().await? {
                true => Ok(()),
                false => Err(lost(
                    "lock",
                    format!("its lock object {} was removed", lock.path()),
                )),
            },
        }
    }

    /// Gives the guard up: the next operation may start at once.
    pub async fn release(self) -> Result<(), LockError> {
        match self.held {
            Held::Lease(mut lease) => {
                if let Some(r) = lease.renewer.take() {
                    r.abort();
                }
                end_lease(&lease.rest, &lease.id).await
            }
            Held::Lock(lock) => lock.release().await.map_err(LockError::from),
        }
    }

    /// The renewer's reports, for tests that wait for a renewal instead of sleeping.
    #[cfg(test)]
    fn status(&self) -> watch::Receiver<LeaseStatus> {
        match &self.held {
            Held::Lease(lease) => lease.status.clone(),
            _ => panic!("not a lease"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
            let (rest, id) = (self.rest.clone(), self.id.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = end_lease(&rest, &id).await;
                });
            }
        }
    }
}

/// Renews the lease every `every` until it is lost. A refusal (409 or 412: broken, or
/// another holder's now) ends it; other failures (Blob Storage unreachable) are retried, and
/// `ensure_held` fails on its own once the lease may have expired.
async fn renew(rest: BlobRest, id: String, every: Duration, tx: watch::Sender<LeaseStatus>) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match rest.renew_lease(LEASE_BLOB, &id).await {
            Ok(()) => tx.send_modify(|s| {
                s.confirmed = sent;
                s.renewals += 1;
            }),
            Err(e) if matches!(e.status, Some(409 | 412)) => {
                tracing::error!(error = %e, "the destructive-operation lease was lost");
                tx.send_modify(|s| s.lost = Some(lost_reason(&e)));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the destructive-operation lease")
            }
        }
    }
}

fn lost_reason(e: &BlobError) -> String {
    match e.code.as_str() {
        "LeaseIsBrokenAndCannotBeRenewed" => "the lease was broken".to_owned(),
        "LeaseIdMismatchWithLeaseOperation" => "another process holds the lease now".to_owned(),
        _ => e.message.clone(),
    }
}

/// Clears the holder's info and releases the lease.
async fn end_lease(rest: &BlobRest, id: &str) -> Result<(), LockError> {
    // Cleared first, so a refused process never shows a holder that has finished.
    let _ = rest
        .put_blob(LEASE_BLOB, Bytes::new(), &[("x-ms-lease-id", id)])
        .await;
    rest.release_lease(LEASE_BLOB, id).await?;
    Ok(())
}

/// Who holds the lease, as the holder wrote it; a holder that has not written yet (it has
/// just acquired) or wrote nothing readable is described as such.
async fn lease_holder(rest: &BlobRest, sealer: Option<&Sealer>) -> String {
    match read_lease_info(rest, sealer).await {
        Ok(Some(info)) => info.describe(),
        Ok(None) => "a process that has just started and not yet recorded itself".to_owned(),
        Err(e) => format!("its holder could not be read: {e}"),
    }
}

async fn read_lease_info(
    rest: &BlobRest,
    sealer: Option<&Sealer>,
) -> Result<Option<LockInfo>, BlobError> {
    match rest.get_blob(LEASE_BLOB).await {
        Ok(bytes) => Ok(crate::open_record(sealer, &bytes)
            .ok()
            .and_then(|json| serde_json::from_slice(json.as_ref()).ok())),
        Err(e) if e.status == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `backup-vault break-lock` did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLock {
    /// `lease` (Blob Storage) or `lock` (a local vault).
    pub mechanism: &'static str,
    /// Whether a lease or lock was held and has been ended.
    pub broken: bool,
    /// Who held it, as far as it said.
    pub holders: Vec<LockInfo>,
}

/// Ends whoever holds the vault's destructive-operation guard, for an operator who knows the
/// holder is gone (or must stop): breaks the lease at once on Blob Storage, removes the
/// destructive lock objects on a local vault. A live holder notices at its next
/// [`DestructiveGuard::ensure_held`] (on Blob Storage, after its next renewal) and stops.
pub async fn break_destructive_lock(store: &VaultStore) -> Result<BrokenLock, LockError> {
    match store.blob_rest() {
        Some(rest) => break_lease(rest, store.sealer()).await,
        None => {
            let mut holders = Vec::new();
            for (path, info) in live_locks(store, Utc::now()).await? {
                if info.kind == LockKind::Destructive {
                    store.delete_if_present(&path).await?;
                    holders.push(info);
                }
            }
            Ok(BrokenLock {
                mechanism: "lock",
                broken: !holders.is_empty(),
                holders,
            })
        }
    }
}

/// [`break_destructive_lock`] on Blob Storage.
pub async fn break_lease(
    rest: &BlobRest,
    sealer: Option<&Sealer>,
) -> Result<BrokenLock, LockError> {
    let state = match rest.properties(LEASE_BLOB).await {
        Ok(p) => p.lease_state,
        Err(e) if e.status == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let leased = state.as_deref() == Some("leased");
    let holders = if leased {
        read_lease_info(rest, sealer).await?.into_iter().collect()
    } else {
        Vec::new()
    };
    if leased {
        rest.break_lease(LEASE_BLOB).await?;
    }
    Ok(BrokenLock {
        mechanism: "lease",
        broken: leased,
        holders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
    use crate::lock::LockKind;
    use pgvault_os::process::local_host_name;

    /// A container on `azurite` under a prefix, as a vault on Blob Storage sees it.
    async fn rest_on(azurite: &pgvault_testkit::Azurite, container: &str) -> BlobRest {
        let location = AzureLocation::parse(&format!("az://devstoreaccount1/{container}/v1"))
            .unwrap()
            .unwrap();
        let rest = BlobRest::new(
            location,
            AzureAuth::Emulator {
                endpoint: azurite.blob_url(),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        );
        rest.create_container().await.unwrap();
        rest
    }

    /// Renewals fast enough to watch without waiting long; the lease itself is Blob
    /// Storage's shortest.
    const FAST: LeaseTiming = LeaseTiming {
        duration: Duration::from_secs(15),
        renew_every: Duration::from_millis(100),
    };

    async fn wait_for(guard: &DestructiveGuard, done: impl FnMut(&LeaseStatus) -> bool) {
        let mut status = guard.status();
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(done))
            .await
            .expect("the renewer reports within 10 s")
            .unwrap();
    }

    #[tokio::test]
    async fn one_lease_holder_at_a_time_on_blob_storage_and_renewals_keep_it() {
        let azurite = pgvault_testkit::Azurite::start();
        let rest = rest_on(&azurite, "lease-one").await;
        // The lease blob does not exist yet: the first taker creates it.
        let sweep = DestructiveGuard::acquire_lease(&rest, None, "V", "retention sweep", FAST)
            .await
            .unwrap();
        sweep.ensure_held().await.unwrap();

        let refused = DestructiveGuard::acquire_lease(&rest, None, "V", "garbage collection", FAST)
            .await
            .unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, LockError::Busy { .. }), "{refused:?}");
        for part in [
            "vault `V` is busy",
            &format!(
                "retention sweep by pid {} on {} since ",
                std::process::id(),
                local_host_name()
            ),
            "expires by itself within 15 seconds",
            "pgvault backup-vault break-lock --vault-name V --yes",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }

        // Renewals succeed and keep the lease: it is still ours, still refused to others.
        wait_for(&sweep, |s| s.renewals >= 3).await;
        sweep.ensure_held().await.unwrap();
        assert!(
            DestructiveGuard::acquire_lease(&rest, None, "V", "gc", FAST)
                .await
                .is_err()
        );

        sweep.release().await.unwrap();
        let props = rest.properties(LEASE_BLOB).await.unwrap();
        assert_eq!(props.lease_state.as_deref(), Some("available"));
        assert_eq!(props.content_length, 0, "the holder's info is cleared");
        let next = DestructiveGuard::acquire_lease(&rest, None, "V", "garbage collection", FAST)
            .await
            .unwrap();
        // A guard dropped without release (a cancelled operation) frees the lease too.
        drop(next);
        let mut again = None;
        for _ in 0..100 {
            match DestructiveGuard::acquire_lease(&rest, None, "V", "sweep", FAST).await {
                Ok(g) => {
                    again = Some(g);
                    break;
                }
                Err(LockError::Busy { .. }) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
        again.expect("the dropped guard's lease was released");
    }

    #[tokio::test]
    async fn a_broken_lease_stops_its_holder_and_frees_the_vault() {
        let azurite = pgvault_testkit::Azurite::start();
        let rest = rest_on(&azurite, "lease-break").await;
        let holder = DestructiveGuard::acquire_lease(&rest, None, "V", "retention sweep", FAST)
            .await
            .unwrap();

        let broken = break_lease(&rest, None).await.unwrap();
        assert!(broken.broken);
        assert_eq!(broken.holders.len(), 1);
        assert_eq!(broken.holders[0].operation, "retention sweep");
        assert_eq!(broken.holders[0].kind, LockKind::Destructive);

        // The next renewal is refused; from then on the holder may not delete.
        wait_for(&holder, |s| s.lost.is_some()).await;
        let err = holder.ensure_held().await.unwrap_err();
        assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
        assert!(err.to_string().contains("the lease was broken"), "{err}");

        // Another process takes the vault at once; the old holder's release does not end it.
        let next = DestructiveGuard::acquire_lease(&rest, None, "V", "garbage collection", FAST)
            .await
            .unwrap();
        assert!(holder.release().await.is_err());
        next.ensure_held().await.unwrap();
        next.release().await.unwrap();

        // Breaking a lease nobody holds says so.
        let nothing = break_lease(&rest, None).await.unwrap();
        assert!(!nothing.broken && nothing.holders.is_empty(), "{nothing:?}");
    }

    #[test]
    fn a_lease_is_trusted_until_it_could_have_expired_or_is_known_lost() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(60);
        // (seconds since the last confirmed renewal, known lost, expected)
        let cases: &[(u64, Option<&str>, Result<(), &str>)] = &[
            (0, None, Ok(())),
            (49, None, Ok(())),
            (
                50,
                None,
                Err("it was last renewed 50 seconds ago and may have expired"),
            ),
            (
                120,
                None,
                Err("it was last renewed 120 seconds ago and may have expired"),
            ),
            (0, Some("the lease was broken"), Err("the lease was broken")),
        ];
        for (ago, lost, expected) in cases {
            let status = LeaseStatus {
                confirmed: t0,
                renewals: 0,
                lost: lost.map(str::to_owned),
            };
            assert_eq!(
                status.check(lease, t0 + Duration::from_secs(*ago)),
                expected.map_err(str::to_owned),
                "{ago} s, {lost:?}"
            );
        }
    }

    fn memory() -> VaultStore {
        VaultStore::open("memory://").unwrap()
    }

    #[tokio::test]
    async fn on_a_local_vault_destructive_locks_exclude_only_each_other() {
        let store = memory();
        let sweep = DestructiveGuard::acquire(&store, "V", "retention sweep")
            .await
            .unwrap();
        // Backups, restores and the sweep's own garbage collection still lock as before.
        let shared = VaultLock::acquire(&store, LockKind::Shared, "backup")
            .await
            .unwrap();
        shared.release().await.unwrap();
        let gc = VaultLock::acquire(&store, LockKind::Exclusive, "garbage collection")
            .await
            .unwrap();
        gc.release().await.unwrap();

        let refused = DestructiveGuard::acquire(&store, "V", "garbage collection")
            .await
            .unwrap_err();
        let message = refused.to_string();
        for part in [
            &format!("retention sweep by pid {} on ", std::process::id()),
            "goes stale",
            "pgvault backup-vault break-lock --vault-name V --yes",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
        sweep.ensure_held().await.unwrap();
        sweep.release().await.unwrap();
        DestructiveGuard::acquire(&store, "V", "garbage collection")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        assert!(live_locks(&store, Utc::now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn breaking_a_local_destructive_lock_stops_its_holder() {
        let store = memory();
        let shared = VaultLock::acquire(&store, LockKind::Shared, "backup")
            .await
            .unwrap();
        let holder = DestructiveGuard::acquire(&store, "V", "delete recovery point")
            .await
            .unwrap();
        let broken = break_destructive_lock(&store).await.unwrap();
        assert!(broken.broken);
        assert_eq!(broken.holders.len(), 1);
        assert_eq!(broken.holders[0].operation, "delete recovery point");
        let err = holder.ensure_held().await.unwrap_err();
        assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
        // The backup's shared lock is untouched.
        assert_eq!(live_locks(&store, Utc::now()).await.unwrap().len(), 1);
        let next = DestructiveGuard::acquire(&store, "V", "retention sweep")
            .await
            .unwrap();
        next.release().await.unwrap();
        holder.release().await.unwrap();
        shared.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_destructive_lock_left_by_a_dead_process_is_stale() {
        let store = memory();
        let now = Utc::now();
        let dead = LockInfo {
            kind: LockKind::Destructive,
            host: local_host_name(),
            pid: u32::MAX - 1,
            operation: "retention sweep".into(),
            created: now,
            refreshed: now,
        };
        store
            .put_json(&object_store::path::Path::from("locks/dead.json"), &dead)
            .await
            .unwrap();
        DestructiveGuard::acquire(&store, "V", "retention sweep")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}
