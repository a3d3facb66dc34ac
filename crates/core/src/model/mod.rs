//! Plain data and pure functions, no IO and no clock reads: policies, durations, backup
//! instances, restore requests, jobs, when a restore drill is due, and the Azure resource
//! shapes they print as.
//!
//! Serde shapes match the JSON that `az dataprotection` prints and the REST API accepts
//! (camelCase, `objectType` tags), so a policy copied from Azure loads unchanged.

pub mod drill;
pub mod duration;
pub mod human;
pub mod instance;
pub mod job;
pub mod policy;
pub mod policy_edit;
pub mod resource;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod simulate;
pub mod templates;
