//! `PGVAULT_HOME` and the vault registry.
//!
//! The home (default `$XDG_DATA_HOME/pgvault`, else `~/.local/share/pgvault`) holds
//! `vaults.json`, the registry from vault name to storage URL, `jobs.sqlite` (the host's
//! job history) and the default location of vaults created without `--storage-url`.
//! The registry is small and rarely written, so it is a JSON file replaced atomically
//! (write a temporary file, then rename).
//!
//! The home is private (0700, its files 0600): the job history names databases and
//! servers. It also decides where a new vault may go ([`Home::check_new_vault`]): never
//! inside or around another vault (a vault's garbage collection deletes what it does not
//! know in its folder), never in a system folder, never in the home's own bookkeeping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Error;
use crate::model::code::ErrorCode;
use crate::model::resource::{IdError, SubscriptionId};
use crate::store::azure::AzureLocation;
use crate::store::disk;

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
    #[error("{SUBSCRIPTION_ENV}: {0}")]
    Subscription(IdError),
}

impl HomeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HomeError::Subscription(e) => e.code(),
            _ => ErrorCode::UserErrorPgvaultHome,
        }
    }
}

/// The environment variable naming the subscription the host serves.
pub const SUBSCRIPTION_ENV: &str = "PGVAULT_SUBSCRIPTION_ID";

/// The home, and the subscription its host serves: one per host, as in Azure a vault is
/// in one subscription. Every id the host prints is under it.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
    subscription: SubscriptionId,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Vault name to storage URL.
    pub vaults: BTreeMap<String, String>,
}

impl Home {
    /// The home from the environment: `PGVAULT_HOME`, `$XDG_DATA_HOME/pgvault`,
    /// `~/.local/share/pgvault`; its subscription from `PGVAULT_SUBSCRIPTION_ID` (a GUID),
    /// else the all-zero GUID.
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
        let subscription = match std::env::var(SUBSCRIPTION_ENV) {
            Ok(text) if !text.is_empty() => {
                SubscriptionId::parse(text.trim()).map_err(HomeError::Subscription)?
            }
            _ => SubscriptionId::default(),
        };
        Ok(Home { dir, subscription })
    }

    /// The home at `dir`, in the all-zero subscription.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Home {
            dir: dir.into(),
            subscription: SubscriptionId::default(),
        }
    }

    /// The home serving `subscription` (`serve --subscription-id`).
    pub fn with_subscription_id(mut self, subscription: SubscriptionId) -> Self {
        self.subscription = subscription;
        self
    }

    /// The subscription the host serves.
    pub fn subscription_id(&self) -> &SubscriptionId {
        &self.subscription
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
        self.create_dir()?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(registry).expect("registry serializes");
        disk::write_private_file(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Creates the home folder (0700, as are missing parents) if it does not exist.
    pub fn create_dir(&self) -> Result<(), HomeError> {
        disk::create_private_dir(&self.dir).map_err(|source| HomeError::Io {
            path: self.dir.display().to_string(),
            source,
        })
    }

    /// The registered name that equals `name` ignoring case: names are unique that way, as
    /// [`crate::engine::Vault`] lookups ignore case.
    pub fn registered<'a>(registry: &'a Registry, name: &str) -> Option<(&'a str, &'a str)> {
        registry
            .vaults
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, u)| (n.as_str(), u.as_str()))
    }

    /// Refuses a new vault `name` at `url` when the name is taken (ignoring case) or the
    /// place is not one for a vault (see [`Home::check_placement`]).
    pub fn check_new_vault(&self, registry: &Registry, name: &str, url: &str) -> Result<(), Error> {
        if let Some((taken, at)) = Self::registered(registry, name) {
            return Err(Error::new(
                ErrorCode::UserErrorVaultAlreadyExists,
                format!(
                    "vault `{taken}` already exists (at {}); vault names are unique ignoring case, so choose another name than `{name}`",
                    shown(at)
                ),
            ));
        }
        self.check_placement(registry, url, "a vault")
    }

    /// Refuses `url` as the folder of a vault or an archive tier (`what`) when it is inside
    /// or around a vault this home registers, inside a folder holding a `vault.json` or
    /// `archive.json` or holding one a level or two down, a system folder, or the home's own
    /// files. Local paths are compared canonical (symlinks and `..` resolved); Blob Storage
    /// locations by account, container and prefix.
    pub fn check_placement(&self, registry: &Registry, url: &str, what: &str) -> Result<(), Error> {
        let refuse = |why: String| {
            Err(Error::new(
                ErrorCode::UserErrorInvalidStorageLocation,
                format!("{what} cannot be at `{}`: {why}", shown(url)),
            ))
        };
        let Some(here) = Place::of(url)? else {
            return Ok(());
        };
        if let Place::Local(path) = &here {
            if let Some(folder) = disk::system_folder(path) {
                return refuse(if path == Path::new(folder) {
                    "that is a system folder; choose a folder of its own, like /var/backups/pgvault"
                        .into()
                } else {
                    format!(
                        "that is inside the system folder `{folder}`; choose a folder of its own, like /var/backups/pgvault"
                    )
                });
            }
            if let Some(home) = disk::canonical(&self.dir) {
                let vaults = home.join("vaults");
                let in_vaults = path.starts_with(&vaults) && *path != vaults;
                if (path.starts_with(&home) && !in_vaults) || home.starts_with(path) {
                    return refuse(format!(
                        "that is PGVAULT_HOME's own bookkeeping (`{}`: the vault registry, the job history, scripts); vaults without --storage-url live under `{}/<name>`",
                        home.display(),
                        vaults.display()
                    ));
                }
            }
        }
        for (name, their_url) in &registry.vaults {
            let Ok(Some(there)) = Place::of(their_url) else {
                continue;
            };
            let at = shown(their_url);
            if here == there {
                return refuse(format!(
                    "that is the folder of vault `{name}`; choose another"
                ));
            }
            if here.is_inside(&there) {
                return refuse(format!(
                    "that is inside vault `{name}` (at `{at}`), whose garbage collection would delete what it does not know there; choose a folder outside every vault"
                ));
            }
            if there.is_inside(&here) {
                return refuse(format!(
                    "that folder holds vault `{name}` (at `{at}`); choose a folder that holds no vault"
                ));
            }
        }
        let Place::Local(path) = here else {
            return Ok(());
        };
        if let Some(marker) = disk::vault_above(&path) {
            let dir = marker.parent().unwrap_or(&path);
            return refuse(format!(
                "that is inside `{}`, which holds a vault or an archive tier (`{}`), whose garbage collection would delete what it does not know there; choose a folder outside every vault",
                dir.display(),
                marker.display()
            ));
        }
        if path.is_dir()
            && let Some(marker) = disk::vault_below(&path)
        {
            return refuse(format!(
                "that folder holds a vault or an archive tier below it (`{}`); choose a folder that holds no vault",
                marker.display()
            ));
        }
        Ok(())
    }
}

/// A storage URL without its query (a SAS must never be repeated).
fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

/// Where a storage URL points, in a form where nesting is a path prefix: a canonical local
/// folder, or `/<account>/<container>/<prefix>` on Blob Storage.
#[derive(PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Blob(PathBuf),
}

impl Place {
    fn of(url: &str) -> Result<Option<Place>, Error> {
        if let Ok(Some(loc)) = AzureLocation::parse(url) {
            let mut p = PathBuf::from("/");
            p.push(loc.account());
            p.push(loc.container());
            if !loc.prefix().is_empty() {
                p.push(loc.prefix());
            }
            return Ok(Some(Place::Blob(p)));
        }
        let Some(dir) = crate::store::local_folder(url)? else {
            return Ok(None);
        };
        Ok(disk::canonical(&dir).map(Place::Local))
    }

    /// Strictly inside `other`.
    fn is_inside(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Local(a), Place::Local(b)) | (Place::Blob(a), Place::Blob(b)) => {
                a != b && a.starts_with(b)
            }
            _ => false,
        }
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

    #[test]
    fn the_home_and_its_registry_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("a/h"));
        home.save_registry(&Registry::default()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(home.dir()), 0o700);
        assert_eq!(mode(&home.dir().join("vaults.json")), 0o600);
    }

    #[test]
    fn blob_locations_nest_by_container_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        let mut r = Registry::default();
        r.vaults.insert("A".into(), "az://acct1/vaults/a".into());
        let check = |url: &str| {
            home.check_placement(&r, url, "a vault")
                .map_err(|e| e.message)
        };
        assert!(
            check("az://acct1/vaults/a/b")
                .unwrap_err()
                .contains("inside vault `A`")
        );
        assert!(
            check("https://acct1.blob.core.windows.net/vaults")
                .unwrap_err()
                .contains("holds vault `A`")
        );
        assert!(check("az://acct1/vaults/ab").is_ok());
        assert!(check("az://acct2/vaults/a/b").is_ok());
        assert!(check("az://acct1/other/a").is_ok());
    }
}
