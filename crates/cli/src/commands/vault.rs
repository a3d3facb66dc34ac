//! `pgvault backup-vault ...`: create, update, show and list vaults; collect garbage; check
//! a vault, rebuild its index and repair it; break the lock of its destructive operations.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use pgvault_host::api::ArchiveAccessTier;
use pgvault_host::api::VerifyStatus;
use pgvault_host::api::{Finding, Percent, ReadData};
use pgvault_host::retention::TierGc;
use pgvault_host::verify::VaultCheck;
use pgvault_model::code::ErrorCode;
use pgvault_model::security::{ImmutabilityState, SecurityChange, SoftDeleteState};

use super::scope::{Ids, Scope, one_or_list};
use super::{coded, open_service};
use crate::output::{Format, line, print, table};
use pgvault_model::human;
use pgvault_model::resource::ResourceKind;

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Create a backup vault: a folder (or, later, a Blob container) that holds policies, instances and recovery points.
    #[command(
        after_help = "Example:\n  pgvault backup-vault create --vault-name TestBkpVault -g SalesRG --storage-url file:///var/backups/pgvault\n\nWithout --storage-url the vault lives under $PGVAULT_HOME/vaults/<name>; without -g it is\nin resource group pgvault, for its whole life."
    )]
    Create {
        /// Name of the vault.
        #[arg(long, short = 'v')]
        vault_name: String,
        #[command(flatten)]
        scope: Scope,
        /// Where the vault's data lives: file:///absolute/path (created if missing).
        #[arg(long)]
        storage_url: Option<String>,
        /// Average chunk size in KiB (4 to 1024), fixed for the vault's life. Smaller chunks
        /// store less after scattered row updates but need a larger index; the default was
        /// chosen with the benchmark (see README).
        #[arg(long)]
        chunk_size_kib: Option<u32>,
        /// Where the archive tier lives: a second location (file:///absolute/path), holding
        /// the recovery points a policy moves or copies to ArchiveStore.
        #[arg(long)]
        archive_storage_url: Option<String>,
        /// The Blob Storage access tier of the archive tier's data: Archive (the default on
        /// Blob Storage; offline, a restore first rehydrates it, hours) or Cold (online, dearer).
        #[arg(long, requires = "archive_storage_url", value_name = "Archive|Cold")]
        archive_access_tier: Option<ArchiveAccessTier>,
        /// Encrypt the vault on the client (see README, Security): every object it writes is
        /// sealed with a random data key wrapped by this key: env:NAME or file:PATH holding a
        /// passphrase (12+ characters) or 32 random bytes, or an Azure Key Vault key URI
        /// https://<vault>.vault.azure.net/keys/<name>. Chosen at creation, for the vault's life;
        /// more keys with `backup-vault key add`.
        #[arg(long, value_name = "REF")]
        encryption_key_uri: Option<String>,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// The keys of an encrypted vault: add, list, rotate, remove.
    #[command(subcommand)]
    Key(super::vault_key::KeyCommand),
    /// Delete a vault that has no backup instances left (delete them first). A vault in the
    /// home's own folder is removed with its files; one you placed elsewhere (--storage-url)
    /// is only unregistered, its files left where they are.
    #[command(
        after_help = "Example:\n  pgvault backup-vault delete --vault-name TestBkpVault --yes"
    )]
    Delete {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[command(flatten)]
        ids: Ids,
        /// Confirm the deletion.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Change a vault: give it an archive tier, or change its Blob Storage access tier.
    #[command(
        after_help = "Examples:\n  pgvault backup-vault update --vault-name TestBkpVault --archive-storage-url file:///mnt/archive/pgvault\n  pgvault backup-vault update --vault-name TestBkpVault --archive-access-tier Cold"
    )]
    Update {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[command(flatten)]
        ids: Ids,
        /// Where the archive tier lives (file:///absolute/path). Set once: an archive tier
        /// holding recovery points is not moved.
        #[arg(
            long,
            required_unless_present_any = ["archive_access_tier", "soft_delete_state", "retention_duration_in_days", "immutability_state"]
        )]
        archive_storage_url: Option<String>,
        /// The Blob Storage access tier the archive tier's data packs are written in from now
        /// on: Archive (the default on Blob Storage) or Cold. Only for an archive tier on Blob
        /// Storage.
        #[arg(long, value_name = "Archive|Cold")]
        archive_access_tier: Option<ArchiveAccessTier>,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// Remove the data no recovery point references any more, now (the retention sweep does
    /// it too). Waits for nothing: when a backup or restore holds the vault it says so.
    #[command(after_help = "Example:\n  pgvault backup-vault gc --vault-name TestBkpVault")]
    Gc {
        #[arg(long, short = 'v')]
        vault_name: String,
    },
    /// Check a whole vault, every tier: every manifest readable, every chunk the recovery
    /// points need in an index and its pack present, index files agreeing with the packs'
    /// trailers; what garbage collection would free; and where this host's job history and
    /// the vault disagree (findings, not damage). Exits non-zero on damage.
    #[command(
        after_help = "Examples:\n  pgvault backup-vault check --vault-name TestBkpVault\n  pgvault backup-vault check --vault-name TestBkpVault --read-data-subset 10% -o table\n  pgvault backup-vault check --vault-name TestBkpVault --read-data\n\nWithout --read-data only pack trailers and chunk lists are read. `recovery-point verify`\nreads single recovery points back whole."
    )]
    Check {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Also read every pack: its bytes must hash to its name and every blob the index
        /// lists must decode to its id.
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// As --read-data, for a random sample of this percentage of the packs (like 10%), a
        /// new sample each run: checks run often cover the whole vault over time.
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<Percent>,
    },
    /// Rebuild the vault's index (index/) from the packs' own trailers, every tier, under the
    /// exclusive lock: for a vault whose index files are lost or damaged. A new index is
    /// written before the old files are deleted, so an interrupted rebuild is safe to rerun.
    #[command(
        after_help = "Example:\n  pgvault backup-vault reindex --vault-name TestBkpVault\n\nDelta chunks whose base no pack holds any more (left in packs by garbage collection) are\nleft out and counted; `backup-vault check` then shows the vault as the packs describe it."
    )]
    Reindex {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Repair too (as `backup-vault repair`): drop unreadable packs, salvage what verifies.
        #[arg(long)]
        repair: bool,
        /// With --repair: read every pack whole, not only those found or recorded bad.
        #[arg(long, requires = "repair")]
        read_data: bool,
    },
    /// Repair a damaged vault, every tier: packs that `recovery-point verify`, `backup-vault
    /// check` or a restore recorded bad, that are shorter than the index says or whose
    /// trailer cannot be read are read whole; every blob that still verifies is copied into
    /// new packs, a new index is written (durable), and only then are the bad packs deleted.
    /// Lists the recovery points that stay damaged and the tables each loses. Exits non-zero
    /// when any does.
    #[command(after_help = "Examples:
  pgvault backup-vault repair --vault-name TestBkpVault
  pgvault backup-vault repair --vault-name TestBkpVault --read-data -o table

Chunks are content addresses: a backup after the repair stores the lost chunks again
when the database still holds the same data, and older recovery points that needed
them restore whole again. Run `backup-vault check --read-data` first to find damage
nothing has recorded yet, or give --read-data here.")]
    Repair {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Read every pack whole, not only those found or recorded bad.
        #[arg(long)]
        read_data: bool,
    },
    /// End the lock that keeps retention sweeps, garbage collection and deletions one at a
    /// time on a vault: on Blob Storage, break its lease; on a local vault, remove its lock
    /// object. For when its holder is gone (a lease also expires by itself within a minute)
    /// or must stop: a live holder stops before its next deletion.
    #[command(
        after_help = "Example:\n  pgvault backup-vault break-lock --vault-name TestBkpVault --yes\n\nThe refused operation's message names the holder (host, pid, operation, since when);\ncheck that it is gone before breaking its lock."
    )]
    BreakLock {
        #[arg(long, short = 'v')]
        vault_name: String,
        /// Confirm (required: a holder still running stops mid-operation).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Show a vault.
    #[command(
        after_help = "Example:\n  pgvault backup-vault show --vault-name TestBkpVault\n  pgvault backup-vault show --ids /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/pgvault/providers/Microsoft.DataProtection/backupVaults/TestBkpVault"
    )]
    Show {
        #[arg(
            long,
            short = 'v',
            required_unless_present = "ids",
            conflicts_with = "ids"
        )]
        vault_name: Option<String>,
        #[command(flatten)]
        ids: Ids,
    },
    /// List the vaults registered in PGVAULT_HOME (with -g, those in that resource group).
    #[command(
        after_help = "Example:\n  pgvault backup-vault list -o table\n  pgvault backup-vault list -g SalesRG"
    )]
    List {
        #[command(flatten)]
        scope: Scope,
    },
}

/// Soft delete and immutability, as az names them (`az dataprotection backup-vault create|update`).
#[derive(clap::Args, Debug, Default)]
pub struct SecurityArgs {
    /// Soft delete: Off, On (a deleted backup instance or recovery point is kept for the
    /// retention days, and can be undeleted) or AlwaysOn (On for good: it cannot be turned
    /// off or shortened). Off can be turned On.
    #[arg(long, value_name = "Off|On|AlwaysOn")]
    soft_delete_state: Option<SoftDeleteState>,
    /// How long soft delete keeps what was deleted: 14 to 180 days (14 by default).
    #[arg(long, value_name = "DAYS")]
    retention_duration_in_days: Option<u32>,
    /// Immutability: Disabled, Unlocked (no recovery point can be removed before its expiry;
    /// can be disabled again) or Locked (the same, for good).
    #[arg(long, value_name = "Disabled|Unlocked|Locked")]
    immutability_state: Option<ImmutabilityState>,
}

impl SecurityArgs {
    fn change(&self) -> SecurityChange {
        SecurityChange {
            soft_delete_state: self.soft_delete_state,
            retention_duration_in_days: self.retention_duration_in_days,
            immutability_state: self.immutability_state,
        }
    }
}

pub async fn run(cmd: VaultCommand, format: Format) -> anyhow::Result<ExitCode> {
    let svc = open_service()?;
    match cmd {
        VaultCommand::Key(cmd) => return super::vault_key::run(svc, cmd, format).await,
        VaultCommand::Create {
            vault_name,
            scope,
            storage_url,
            chunk_size_kib,
            archive_storage_url,
            archive_access_tier,
            encryption_key_uri,
            security,
        } => {
            scope.check_subscription(&svc)?;
            // The settings are checked before the vault is created.
            pgvault_model::security::SecuritySettings::default()
                .apply(&vault_name, &security.change())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let group = scope.group()?.unwrap_or_default();
            let chunk_avg = chunk_size_kib.map(|k| k.saturating_mul(1024));
            // Both places are checked before either is created.
            svc.check_new_vault(
                &vault_name,
                storage_url.as_deref(),
                archive_storage_url.as_deref(),
            )
            .map_err(coded)?;
            let vault = svc.create_vault_with(
                &vault_name,
                &group,
                storage_url.as_deref(),
                chunk_avg,
                encryption_key_uri.as_deref(),
            );
            let mut vault = vault.await.map_err(coded)?;
            if let Some(url) = archive_storage_url {
                vault = svc
                    .set_archive_settings(&vault_name, Some(&url), archive_access_tier)
                    .await
                    .map_err(coded)?;
            }
            if !security.change().is_empty() {
                vault = svc
                    .set_security_settings(&vault_name, &security.change())
                    .await
                    .map_err(coded)?;
            }
            print(&vault, format)?
        }
        VaultCommand::Update {
            vault_name,
            ids,
            archive_storage_url,
            archive_access_tier,
            security,
        } => {
            let targets = ids
                .targets(&svc, ResourceKind::Vault, vault_name.as_deref(), None, None)
                .await?;
            let mut out = Vec::new();
            for t in targets {
                let mut shown = None;
                if archive_storage_url.is_some() || archive_access_tier.is_some() {
                    shown = Some(
                        svc.set_archive_settings(
                            &t.vault,
                            archive_storage_url.as_deref(),
                            archive_access_tier,
                        )
                        .await
                        .map_err(coded)?,
                    );
                }
                if !security.change().is_empty() {
                    shown = Some(
                        svc.set_security_settings(&t.vault, &security.change())
                            .await
                            .map_err(coded)?,
                    );
                }
                out.extend(shown);
            }
            print(&one_or_list(out), format)?
        }
        VaultCommand::Delete {
            vault_name,
            ids,
            yes,
        } => {
            let targets = ids
                .targets(&svc, ResourceKind::Vault, vault_name.as_deref(), None, None)
                .await?;
            if !yes {
                let names: Vec<&str> = targets.iter().map(|t| t.vault.as_str()).collect();
                anyhow::bail!(
                    "{code}: deleting vault `{}` cannot be undone; add --yes to confirm",
                    names.join("`, `"),
                    code = ErrorCode::UserErrorConfirmationRequired
                );
            }
            for t in targets {
                svc.delete_vault(&t.vault).await.map_err(coded)?;
                eprintln!("Vault `{}` deleted.", t.vault);
            }
        }
        VaultCommand::Gc { vault_name } => {
            let tiers = svc
                .collect_vault_garbage(&vault_name)
                .await
                .map_err(coded)?;
            let failed = tiers.iter().any(|t| t.outcome.is_err());
            match format {
                Format::Json => print(&serde_json::to_value(&tiers)?, format)?,
                Format::Table => line(&gc_table(&tiers))?,
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VaultCommand::Check {
            vault_name,
            read_data,
            read_data_subset,
        } => {
            let read = match (read_data, read_data_subset) {
                (true, _) => ReadData::All,
                (false, Some(percent)) => ReadData::Subset {
                    percent,
                    // A new sample each run; std's per-process random hasher keys suffice.
                    seed: RandomState::new().build_hasher().finish(),
                },
                (false, None) => ReadData::Structure,
            };
            let check = svc.check_vault(&vault_name, read).await.map_err(coded)?;
            match format {
                Format::Json => print(&serde_json::to_value(&check)?, format)?,
                Format::Table => print_check(&check)?,
            }
            if check.status == VerifyStatus::Damaged {
                eprintln!(
                    "{code}: vault `{}` has damage; see the findings of severity Error",
                    check.vault_name,
                    code = ErrorCode::VaultDamaged
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        VaultCommand::Reindex {
            vault_name,
            repair: true,
            read_data,
        }
        | VaultCommand::Repair {
            vault_name,
            read_data,
        } => {
            let tiers = svc
                .repair_vault(&vault_name, read_data)
                .await
                .map_err(coded)?;
            match format {
                Format::Json => print(&serde_json::to_value(&tiers)?, format)?,
                Format::Table => {
                    for t in &tiers {
                        let r = &t.report;
                        line(&format!(
                            "{}: {} packs checked, {} read; {} bad, {} missing; {} chunks salvaged into {} new packs, {} lost; {} bad packs deleted",
                            t.data_store_type,
                            r.packs_checked,
                            r.packs_read,
                            r.bad_packs.len(),
                            r.missing_packs.len(),
                            r.chunks_salvaged,
                            r.new_packs,
                            r.chunks_lost,
                            r.packs_deleted
                        ))?;
                        for d in &r.damaged_recovery_points {
                            line(&format!(
                                "  damaged: {}/{}: {} chunks ({}) lost{}{}",
                                d.backup_instance_name,
                                d.recovery_point_id,
                                d.lost_chunks,
                                human::size(d.lost_bytes),
                                if d.tables_lost.is_empty() {
                                    String::new()
                                } else {
                                    format!("; tables: {}", d.tables_lost.join(", "))
                                },
                                d.unrestorable
                                    .as_ref()
                                    .map(|u| format!("; cannot restore: {u}"))
                                    .unwrap_or_default()
                            ))?;
                        }
                    }
                }
            }
            if tiers
                .iter()
                .any(|t| !t.report.damaged_recovery_points.is_empty())
            {
                return Ok(ExitCode::FAILURE);
            }
        }
        VaultCommand::Reindex { vault_name, .. } => {
            let tiers = svc.reindex_vault(&vault_name).await.map_err(coded)?;
            match format {
                Format::Json => print(&serde_json::to_value(&tiers)?, format)?,
                Format::Table => {
                    for t in &tiers {
                        line(&format!(
                            "{}: {} packs, {} chunks indexed in {}; {} old index files replaced; {} dead delta entries left out",
                            t.data_store_type,
                            t.report.packs_indexed,
                            t.report.chunks_indexed,
                            t.report.index_file,
                            t.report.index_files_replaced,
                            t.report.dead_delta_entries_left_out
                        ))?;
                    }
                }
            }
            for t in &tiers {
                for pack in &t.report.packs_left_out {
                    eprintln!(
                        "warning: pack {pack} ({}) has an unreadable trailer and no old index listed it: its chunks are in no index",
                        t.data_store_type
                    );
                }
            }
        }
        VaultCommand::BreakLock { vault_name, yes } => {
            if !yes {
                anyhow::bail!(
                    "{code}: breaking the lock of vault `{vault_name}` stops the retention sweep, garbage collection or deletion holding it, if it still runs; add --yes to confirm",
                    code = ErrorCode::UserErrorConfirmationRequired
                );
            }
            let broken = svc
                .break_destructive_lock(&vault_name)
                .await
                .map_err(coded)?;
            print(&serde_json::to_value(&broken)?, format)?;
        }
        VaultCommand::Show { vault_name, ids } => {
            let targets = ids
                .targets(&svc, ResourceKind::Vault, vault_name.as_deref(), None, None)
                .await?;
            let mut out = Vec::new();
            for t in targets {
                out.push(svc.vault_json(&t.vault).await.map_err(coded)?);
            }
            print(&one_or_list(out), format)?
        }
        VaultCommand::List { scope } => {
            scope.check_subscription(&svc)?;
            let group = scope.group()?;
            print(
                &Value::Array(svc.vaults_json(group.as_ref()).await.map_err(coded)?),
                format,
            )?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tier per paragraph: its counts, what garbage collection would free, its findings; then
/// the job history's findings.
fn print_check(check: &VaultCheck) -> std::io::Result<()> {
    let finding = |f: &Finding| -> std::io::Result<()> {
        line(&format!(
            "    {:<8} {:<28} {}",
            format!("{:?}", f.severity),
            format!("{:?}", f.kind),
            f.message
        ))?;
        if !f.recovery_points.is_empty() {
            line(&format!(
                "{:>42}needed by {}",
                "",
                f.recovery_points.join(", ")
            ))?;
        }
        Ok(())
    };
    line(&format!(
        "Vault {}: {} (read data: {})",
        check.vault_name, check.status, check.read_data
    ))?;
    for t in &check.data_stores {
        let c = &t.check;
        line(&format!(
            "  {}: {}. {} recovery points, {} index files, {} packs ({}), {} chunks indexed, {} referenced; {} packs read, {} blobs verified",
            t.data_store_type,
            t.status,
            c.recovery_points,
            c.index_files,
            c.packs,
            human::size(c.pack_bytes),
            c.indexed_chunks,
            c.referenced_chunks,
            c.packs_read,
            c.blobs_verified
        ))?;
        let u = &c.unreferenced;
        line(&format!(
            "    unreferenced: {} chunks ({}), {} dead packs ({}), {} unindexed packs ({})",
            u.chunks,
            human::size(u.bytes),
            u.dead_packs,
            human::size(u.dead_pack_bytes),
            u.unindexed_packs,
            human::size(u.unindexed_pack_bytes)
        ))?;
        c.findings.iter().try_for_each(finding)?;
    }
    if !check.job_history.is_empty() {
        line("  job history:")?;
        check.job_history.iter().try_for_each(finding)?;
    }
    if !check.configuration.is_empty() {
        line("  policies and instances:")?;
        check.configuration.iter().try_for_each(finding)?;
    }
    Ok(())
}

/// `gc -o table`: one row per tier, what the collection found and freed (or why it did not run).
fn gc_table(tiers: &[TierGc]) -> String {
    let rows: Vec<Vec<String>> = tiers
        .iter()
        .map(|t| {
            let mut row = vec![t.data_store_type.to_string()];
            match &t.outcome {
                Ok(r) => row.extend([
                    if r.finished { "Completed" } else { "Stopped" }.to_owned(),
                    r.recovery_points.to_string(),
                    r.packs_before.to_string(),
                    r.dead_packs.to_string(),
                    r.repacked_packs.to_string(),
                    r.new_packs.to_string(),
                    human::size(r.bytes_freed),
                    human::size(r.bytes_written),
                    String::new(),
                ]),
                Err(e) => {
                    // The host defers a collection when the vault is busy (see retention.rs).
                    let outcome = if e.starts_with("deferred") {
                        "Deferred"
                    } else {
                        "Failed"
                    };
                    row.push(outcome.to_owned());
                    row.extend(std::iter::repeat_n(String::new(), 7));
                    row.push(e.clone());
                }
            }
            row
        })
        .collect();
    table(
        &[
            "Tier",
            "Outcome",
            "Recovery points",
            "Packs",
            "Dead packs",
            "Repacked",
            "New packs",
            "Bytes freed",
            "Bytes written",
            "Error",
        ],
        &rows,
    )
}
