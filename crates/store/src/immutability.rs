//! Immutability enforced by Blob Storage itself: version-level time-based retention policies
//! on the objects a recovery point needs, so that not even the storage account key can delete
//! or overwrite them before the point's expiry.
//!
//! A recovery point needs its manifest, the packs holding its chunk-list blocks and data
//! chunks, and the packs holding the delta bases of those chunks. Packs are shared: a chunk
//! written by one backup is referenced by every later backup that dedups against it, so a
//! pack's retention must reach the expiry of the latest point referencing it.
//! [`retain_until`] therefore only ever extends: it reads each blob's current until-date
//! (Get Blob Properties) and sets a later one (Set Blob Immutability Policy) where it falls
//! short. A backup calls it for its packs before its manifest is written (so a point never
//! exists with unprotected data) and for its manifest right after.
//!
//! Azurite has no immutability support (its Set Blob Immutability Policy answers "not
//! implemented"), so the tests run these requests against a double that records and enforces
//! the documented headers (see the tests below).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::blob_rest::{BlobError, BlobRest, ImmutabilityPolicyMode};
use super::chunk::ChunkKind;
use super::manifest::{StreamInfo, decode_chunk_list};
use super::pack::{ChunkIndex, PackId};
use super::reader::{ReadError, fetch_blob};
use super::{VaultStore, paths};

/// Every pack a stream needs: those holding its chunk-list blocks, its chunks and their delta
/// bases, as `index` places them.
pub async fn packs_of(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    stream: &StreamInfo,
) -> Result<HashSet<PackId>, ReadError> {
    let mut packs = HashSet::new();
    let mut add = |id| -> Result<(), ReadError> {
        let (pack, _) = index.get(&id).ok_or(ReadError::MissingChunk(id))?;
        packs.insert(pack);
        if let Some(base) = index.base_of(&id) {
            let (pack, _) = index.get(&base).ok_or(ReadError::MissingChunk(base))?;
            packs.insert(pack);
        }
        Ok(())
    };
    for list in &stream.chunk_lists {
        add(*list)?;
        let (kind, block) = fetch_blob(store, index, key, *list).await?;
        let refs = decode_chunk_list(&block)
            .filter(|_| kind == ChunkKind::ChunkList)
            .ok_or(ReadError::MissingChunk(*list))?;
        for r in refs {
            add(r.id)?;
        }
    }
    Ok(packs)
}

/// What [`retain_until`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Blobs whose retention was set or extended.
    pub extended: usize,
    /// Blobs whose retention already reached the date.
    pub already: usize,
}

/// Makes every blob in `blobs` (paths under the vault's prefix) undeletable until at least
/// `until`, in `mode`: a blob whose policy already reaches that date (in a mode at least as
/// strong) is left as it is; no policy is ever shortened.
pub async fn retain_until(
    rest: &BlobRest,
    blobs: impl IntoIterator<Item = String>,
    until: DateTime<Utc>,
    mode: ImmutabilityPolicyMode,
) -> Result<Retained, BlobError> {
    let mut done = Retained::default();
    for blob in blobs {
        let props = rest.properties(&blob).await?;
        let current = props.immutability_policy_until;
        let locked = props.immutability_policy_mode.as_deref() == Some("Locked");
        let mode_ok = locked || mode == ImmutabilityPolicyMode::Unlocked;
        if current.is_some_and(|c| c >= until) && mode_ok {
            done.already += 1;
            continue;
        }
        // Never shorter than what the blob has; a Locked policy stays Locked.
        let until = current.map_or(until, |c| c.max(until));
        let mode = if locked {
            ImmutabilityPolicyMode::Locked
        } else {
            mode
        };
        rest.set_immutability_policy(&blob, until, mode).await?;
        done.extended += 1;
    }
    Ok(done)
}

/// The blob names of `packs`, in order.
pub fn pack_blobs(packs: &HashSet<PackId>) -> Vec<String> {
    let mut blobs: Vec<String> = packs.iter().map(|p| paths::pack(p).to_string()).collect();
    blobs.sort();
    blobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
    use crate::testing::immutability_double as double;

    fn client(port: u16) -> BlobRest {
        let location = AzureLocation::parse("az://devstoreaccount1/vault")
            .unwrap()
            .unwrap();
        BlobRest::new(
            location,
            AzureAuth::Emulator {
                endpoint: format!("http://127.0.0.1:{port}"),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        )
    }

    /// A shared pack's retention is extended to the latest point's expiry and never
    /// shortened; the headers are the documented ones; and what is retained cannot be deleted
    /// before its date (the double enforces what Blob Storage would).
    #[tokio::test]
    async fn retention_is_only_ever_extended_with_the_documented_headers() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let now = t("2030-01-01T00:00:00Z");
        let (port, seen, blobs) = double(now).await;
        let rest = client(port);
        let pack = "packs/ab/abcd".to_owned();
        let first = t("2030-04-01T00:00:00Z");
        let done = retain_until(
            &rest,
            [pack.clone()],
            first,
            ImmutabilityPolicyMode::Unlocked,
        )
        .await
        .unwrap();
        assert_eq!(
            done,
            Retained {
                extended: 1,
                already: 0
            }
        );
        {
            let seen = seen.lock().unwrap();
            let put = seen.iter().find(|r| r.0 == "PUT").unwrap();
            assert_eq!(
                put.1,
                "/devstoreaccount1/vault/packs/ab/abcd?comp=immutabilityPolicies"
            );
            assert_eq!(put.2.as_deref(), Some("Mon, 01 Apr 2030 00:00:00 GMT"));
            assert_eq!(put.3.as_deref(), Some("Unlocked"));
        }

        // A later point deduplicating against the pack extends it; an earlier one does not
        // shorten it.
        let later = t("2031-01-01T00:00:00Z");
        retain_until(
            &rest,
            [pack.clone()],
            later,
            ImmutabilityPolicyMode::Unlocked,
        )
        .await
        .unwrap();
        let done = retain_until(
            &rest,
            [pack.clone()],
            first,
            ImmutabilityPolicyMode::Unlocked,
        )
        .await
        .unwrap();
        assert_eq!(
            done,
            Retained {
                extended: 0,
                already: 1
            }
        );
        let key = "/devstoreaccount1/vault/packs/ab/abcd".to_owned();
        assert_eq!(blobs.lock().unwrap()[&key].until, Some(later));

        // Locking the vault locks the policies at the same date or later; a Locked policy is
        // never asked to become Unlocked.
        retain_until(&rest, [pack.clone()], later, ImmutabilityPolicyMode::Locked)
            .await
            .unwrap();
        assert_eq!(blobs.lock().unwrap()[&key].mode.as_deref(), Some("Locked"));
        retain_until(
            &rest,
            [pack.clone()],
            t("2032-01-01T00:00:00Z"),
            ImmutabilityPolicyMode::Unlocked,
        )
        .await
        .unwrap();
        assert_eq!(blobs.lock().unwrap()[&key].mode.as_deref(), Some("Locked"));
        assert_eq!(
            blobs.lock().unwrap()[&key].until,
            Some(t("2032-01-01T00:00:00Z"))
        );

        // What Blob Storage would then do with a deletion before the date.
        let err = rest.delete_blob(&pack).await.unwrap_err();
        assert_eq!(err.status, Some(409));
        assert!(err.is("BlobImmutableDueToPolicy"), "{err:?}");
    }
}
