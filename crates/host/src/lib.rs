//! pgvault-host: pgvault as a scripting host.
//!
//! [`service::Pgvault`] is the one entry point for operations: it opens the home (vault
//! registry and job history) and runs each operation as a recorded job, through one
//! lifecycle (`job_run::JobRun`) that ends the job on every path and releases its locks.
//! [`agenda::Agenda`] says what is due and when, for `serve` and `tick`. [`history`] is the
//! SQLite job history; [`script`] the Rhai API over the service. Rhai stays out of the core
//! crate, so the engine can be used without a script engine.
//!
//! The host is the only door into pgvault for the callers above it (the CLI, the REPL and
//! the REST API): they depend on this crate and the pure model, never on the core, and use
//! what [`api`] re-exports of it.

pub mod agenda;
pub mod alerts;
pub mod api;
pub mod arm;
pub mod clock;
pub mod drill;
pub mod dropin;
pub mod history;
mod job_run;
pub use job_run::{INITIATED_BY_DETAIL, OnBehalf, on_behalf};
pub mod access;
pub mod metrics;
pub mod queries;
pub mod resources;
pub mod retention;
pub mod scheduler;
pub mod security;
pub use scheduler::ScheduledWork;
pub mod script;
pub mod script_run;
pub mod serve;
pub mod service;
pub mod verify;
