//! pgvault-model: plain data and pure functions, no IO, no clock reads and no async: policies,
//! durations, backup instances, restore requests, jobs, when a restore drill is due, the Azure
//! resource shapes they print as, and the parsing of what users hand in (connection strings,
//! datasources, secret and key references).
//!
//! The crate's dependencies are the compiler's check of that rule: serde, chrono (no clock
//! feature), time zones, `url` and `thiserror`; no tokio, no file system, no network client.
//!
//! Serde shapes match the JSON that `az dataprotection` prints and the REST API accepts
//! (camelCase, `objectType` tags), so a policy copied from Azure loads unchanged.

pub mod code;
pub mod connection;
pub mod drill;
pub mod duration;
pub mod human;
pub mod instance;
pub mod job;
pub mod key;
pub mod plot;
pub mod policy;
pub mod policy_edit;
pub mod redact;
pub mod request;
pub mod resource;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod security;
pub mod simulate;
pub mod templates;
