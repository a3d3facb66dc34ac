//! End-to-end tests: the real `pgvault` binary against a real PostgreSQL server (a
//! throwaway cluster started from the installed server binaries, or the server named by
//! PGVAULT_TEST_DATABASE_URL), real `pg_dump` / `pg_restore`, real files. No mocks.

mod alerts;
mod archive_tier;
mod arm_scope;
mod azure_walkthrough;
mod blob;
mod blob_restore;
mod console;
mod console_policy;
mod dedup;
mod deletion;
mod drill;
mod encryption;
mod failures;
mod grants;
mod keyvault;
mod lease;
mod policy_edit;
mod protection;
mod readiness;
mod readme;
mod repl;
mod restore_fit;
mod restore_options;
mod retention;
mod round_trip;
mod runbooks;
mod schedule;
mod script;
mod sdk;
mod secrets;
mod serve;
mod simulate;
mod sizes;
mod soft_delete;
mod support;
mod tables;
mod verify;
mod walkthrough;
mod webdriver;
