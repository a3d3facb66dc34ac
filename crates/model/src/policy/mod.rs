//! Azure Backup's `BackupPolicy` as typed data: the JSON that `az dataprotection backup-policy`
//! prints and the Data Protection REST API accepts, so a policy copied from Azure loads here
//! unchanged and one written here is accepted by Azure.
//!
//! A policy is a list of rules. One `AzureBackupRule` says when backups are taken (a schedule
//! trigger) and how each is tagged (tagging criteria, by priority); `AzureRetentionRule`s say how
//! long a backup with a given tag lives in each datastore (lifecycles), and whether it is copied
//! to the archive tier on the way. The tag name is the link: a backup tagged `Monthly` is kept
//! by the retention rule named `Monthly`, and everything else by the default rule `Default`.
//!
//! Input is read loosely and output is written the way the service answers, because clients
//! send loose JSON and compare what they get back:
//! - property names match whatever their case, and in snake_case too (`TagName`,
//!   `days_of_the_week`, as the az CLI's `tag create-generic-criteria` writes them): see
//!   [`normalize_property_names`];
//! - `objectType` values match whatever their case (`azureretentionrule` is accepted) where
//!   they choose between kinds (rules, triggers, copy options); objects Azure defines with a
//!   single kind (`DataStoreInfoBase`, `AbsoluteDeleteOption`, `AzureBackupParams`, ...) are
//!   written with their `objectType` and read without looking at it;
//! - where an array is declared, a single object or `null` is accepted too (the service takes a
//!   lone `targetDataStoreCopySettings` object) and always written back as an array;
//! - unknown fields are ignored, so a body carrying extra properties still loads;
//! - `tagInfo.id` is computed, never stored: the service assigns tag name + `_`;
//! - tagging criteria are kept and written in the order they were given, as the service keeps
//!   them (so validation paths point at the entries the user wrote, and a policy read back
//!   lists them as it was written); `taggingPriority` alone decides which tag a backup gets.
//!
//! Loading is two steps, parse then check: serde turns the JSON into these types (durations
//! become [`IsoDuration`]s there), then [`BackupPolicy::validate`] checks the rules that span
//! several fields (one default retention rule, a rule for every tag, ...) and names the JSON

mod lenient;
mod types;
mod validate;

pub use lenient::*;
pub use types::*;
pub use validate::*;

#[cfg(test)]
mod tests;
