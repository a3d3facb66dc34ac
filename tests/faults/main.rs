//! Fault tests: pgvault tried as a failing disk, a killed process and an attacker would try it.
//!
//! Each module takes one kind of fault (damaged vault objects, dumps that end early, killed
//! backups and restores, sandbox escapes, races, file modes, size limits, full disks) and
//! checks the promise the README's Reliability section makes about it: a recovery point exists
//! only if it restores, damage is named and contained, nothing is left behind, and no input or
//! vault content makes pgvault panic. Same harness as `tests/e2e`: the real binary, a real
//! PostgreSQL server, real files.

#[path = "../e2e/support.rs"]
#[allow(dead_code)]
mod support;

mod damage;
mod dump;
mod guards;
mod home;
mod inputs;
mod reader;
mod sandbox;
mod tidy;
