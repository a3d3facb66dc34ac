//! What the callers above the host (the CLI, the REPL, the REST API) may use of the core,
//! besides [`crate::service::Pgvault`]'s operations and the pure model (`pgvault_model`):
//! the home, the typed errors operations return, the request builders az's `initialize-*`
//! commands run, and the types of options and reports. Nothing here reaches a vault's store or
//! a database: that goes through the service, as a job or a query.

pub use pgvault_core::engine::drill::{DrillTarget, RecoveryPointChoice};
pub use pgvault_core::engine::home::Home;
pub use pgvault_core::engine::protect::{
    InitializeArgs, ServerArgs, initialize_instance, server_databases,
};
pub use pgvault_core::engine::restore::{
    FilesTarget, initialize_for_data_recovery, initialize_for_data_recovery_as_files,
    initialize_for_data_recovery_to_files, source_datastore,
};
pub use pgvault_core::engine::verify::{PointSelection, PointVerification, VerifyStatus};
pub use pgvault_core::engine::{Error, Result};
pub use pgvault_core::limits;
pub use pgvault_core::postgres::readiness::grant_script_at;
pub use pgvault_core::secrets::identity::CredentialKind;
pub use pgvault_core::store::ArchiveAccessTier;
pub use pgvault_core::store::check::{Finding, Percent, ReadData};

/// Chooses the Azure credential for Key Vault and Entra-authenticated storage
/// (`--azure-credential`), before the first use; `false` when one was already chosen.
pub fn configure_azure_credential(kind: Option<CredentialKind>) -> bool {
    pgvault_core::secrets::keyvault::configure(kind)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The layers, as crate dependencies: each crate of the workspace and the pgvault crates it
    /// may depend on (normal dependencies; tests may use more). The compiler enforces each
    /// line (a crate cannot name what it does not depend on); this test keeps the lines
    /// themselves from changing unnoticed: a new edge must be added here, on purpose, with
    /// ARCHITECTURE.md's invariants.
    const LAYERS: &[(&str, &[&str])] = &[
        ("model", &[]),
        ("os", &[]),
        ("pgdump", &["pgvault-model"]),
        ("azure", &["pgvault-model", "pgvault-os"]),
        // pg_dump's scanner only for the store's `testing` feature (the engine's tests):
        // the vault format's code knows no stream format.
        (
            "store",
            &["pgvault-azure", "pgvault-os", "pgvault-pgdump (optional)"],
        ),
        (
            "core",
            &[
                "pgvault-azure",
                "pgvault-model",
                "pgvault-os",
                "pgvault-pgdump",
                "pgvault-store",
            ],
        ),
        ("host", &["pgvault-core"]),
        (
            "cli",
            &[
                "pgvault-host",
                "pgvault-model",
                "pgvault-portal",
                "pgvault-testkit",
            ],
        ),
        ("portal", &["pgvault-host", "pgvault-model"]),
        ("testkit", &[]),
    ];

    /// The `pgvault-*` names under `[dependencies]` of a crate's Cargo.toml, optional ones
    /// marked.
    fn pgvault_dependencies(manifest: &str) -> Vec<String> {
        let mut section = "";
        let mut out = Vec::new();
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if section == "[dependencies]"
                && let Some(name) = line.split(['.', ' ', '=']).next()
                && name.starts_with("pgvault-")
            {
                if line.contains("optional = true") {
                    out.push(format!("{name} (optional)"));
                } else {
                    out.push(name.to_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn crates_depend_only_on_the_layers_below_them() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(root).unwrap() {
            let dir = entry.unwrap().path();
            let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
                continue;
            };
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            found.insert(name, pgvault_dependencies(&manifest));
        }
        let expected: BTreeMap<String, Vec<String>> = LAYERS
            .iter()
            .map(|(krate, deps)| {
                let deps = deps.iter().map(|d| d.to_string()).collect();
                (krate.to_string(), deps)
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_dependency_reader_reads_the_dependencies_section_only() {
        let manifest = "[package]\nname = \"pgvault-x\"\n[dependencies]\npgvault-a.workspace = true\npgvault-b = { workspace = true, optional = true }\nserde = \"1\"\n[dev-dependencies]\npgvault-c.workspace = true\n";
        assert_eq!(
            pgvault_dependencies(manifest),
            ["pgvault-a", "pgvault-b (optional)"]
        );
    }
}
