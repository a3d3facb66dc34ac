//! pgvault-azure: Azure's wire protocols, spoken by hand where no well-kept crate speaks them
//! for us: the credential chain ([`identity`]: environment, workload and managed identity,
//! `az`), Key Vault's secrets API ([`keyvault`]), and the Blob REST calls `object_store` has
//! none for ([`blob_rest`]: containers, leases, access tiers, properties), with storage
//! locations and credentials ([`storage`]). The store and the secrets use this crate; it knows
//! nothing of vaults or PostgreSQL.

pub mod blob_rest;
pub mod identity;
pub mod keyvault;
pub mod storage;
