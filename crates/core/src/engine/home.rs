//! `PGVAULT_HOME` and the vault registry.
//!
//! The home (default `$XDG_DATA_HOME/pgvault`, else `~/.local/share/pgvault`) holds
//! `vaults.json`, the registry from vault name to storage URL, `jobs.sqlite` (the host's
//! job history) and the default location of vaults created without `--storage-url`.
//! The registry is small and rarely written, so it is a JSON file replaced atomically
//! (write a temporary file, then rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find a home folder: set PGVAULT_HOME (or HOME or XDG_DATA_HOME)")]
    NoHome,
    #[error("cannot use `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the vault registry `{path}` is not valid JSON ({source}); fix or remove it")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Vault name to storage URL.
    pub vaults: BTreeMap<String, String>,
}

impl Home {
    /// The home from the environment: `PGVAULT_HOME`, `$XDG_DATA_HOME/pgvault`,
    /// `~/.local/share/pgvault`.
    pub fn from_env() -> Result<Self, HomeError> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = env("PGVAULT_HOME")
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("pgvault")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/pgvault")))
            .ok_or(HomeError::NoHome)?;
        Ok(Home { dir })
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Home { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn jobs_db(&self) -> PathBuf {
        self.dir.join("jobs.sqlite")
    }

    /// Where a vault created without `--storage-url` lives.
    pub fn default_vault_dir(&self, vault: &str) -> PathBuf {
        self.dir.join("vaults").join(vault)
    }

    fn registry_path(&self) -> PathBuf {
        self.dir.join("vaults.json")
    }

    pub fn registry(&self) -> Result<Registry, HomeError> {
        let path = self.registry_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| HomeError::Corrupt {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(source) => Err(HomeError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn save_registry(&self, registry: &Registry) -> Result<(), HomeError> {
        let path = self.registry_path();
        let io = |source| HomeError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(registry).expect("registry serializes");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert!(home.registry().unwrap().vaults.is_empty());
        let mut r = Registry::default();
        r.vaults.insert("V".into(), "file:///x".into());
        home.save_registry(&r).unwrap();
        assert_eq!(home.registry().unwrap().vaults["V"], "file:///x");
    }
}
