//! pgvault-os: what pgvault takes from the operating system below every other layer: bounded
//! reads of the files a user names ([`limits`]), facts about this machine's processes
//! ([`process`]) and the test-only kill hook ([`fault`]). The store, the Azure clients and the
//! core all use these; nothing here knows about vaults, PostgreSQL or Azure.

pub mod fault;
pub mod limits;
pub mod process;
