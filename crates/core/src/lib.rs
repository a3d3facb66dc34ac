//! pgvault-core: the model, the policy engine, the vault engine and its adapters.
//!
//! The main types: [`engine::Vault`] (an open vault: its store and `vault.json`),
//! [`store::manifest::Manifest`] (a recovery point), [`model::policy::BackupPolicy`]
//! (Azure's policy JSON, typed), and the operations in [`engine`] (protect, backup,
//! restore), each returning an [`engine::Error`] with an Azure-style code.
//!
//! Key decisions, and why:
//! - **`pg_dump` custom format, uncompressed, chunked by us.** Compression in `pg_dump`
//!   runs on one core and makes the stream undedupable; cutting the plain stream with
//!   FastCDC and compressing chunks with zstd on every core is both faster and smaller
//!   across backups.
//! - **Content-addressed chunks in packs.** Unchanged data is stored once; packs of a few
//!   MiB keep the object count low on Blob Storage.
//! - **The manifest is written last.** A recovery point exists if and only if its manifest
//!   exists, so a failed or killed backup never leaves half a recovery point.
//! - **`model/` is pure.** Time is a parameter, so schedules, tags and retention are
//!   testable with fixed clocks and the CLI can offer `--at`.
//! - **Secrets are references until the moment of use.** A backup instance names a secret
//!   (`env:`, `file:`, Key Vault); its value reaches only the `pg_dump` child's
//!   environment and the `tokio-postgres` connection, never the vault, a job or a log.

pub mod engine;
/// The pure model, its own crate so that the compiler keeps it free of IO.
pub use pgvault_model as model;
/// Bounded reads of named files, process facts and the fault hook (crate pgvault-os).
pub use pgvault_os::{fault, limits, process};
pub mod postgres;
pub mod secrets;
/// The vault format (crate pgvault-store), which knows no stream format but through
/// `store::observe`.
pub use pgvault_store as store;
