//! The operations: create a vault, create a policy, configure protection (with readiness
//! validation), back up, restore, drill a restore. Each is an async function over a [`Vault`]; the host
//! wraps them in jobs.
//!
//! Every failure is an [`Error`] with an Azure-style code (`UserErrorDBUserAuthFailed`,
//! `UserErrorMissingDBPermissions`, ...) and a message that says what was wrong and what
//! to do. Messages never carry a secret: the modules that touch secrets build their
//! messages from references and names only.

pub mod backup;
pub mod drill;
pub mod home;
pub mod leftovers;
pub mod protect;
pub mod restore;
pub mod sweep;
pub mod vault;
pub mod verify;

pub use vault::{Vault, VaultConfig};

/// An operation's failure: an Azure-style error code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: String,
    pub message: String,
}

impl Error {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

macro_rules! coded {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::new(e.code(), e.to_string())
            }
        }
    )*};
}

coded!(
    crate::secrets::SecretError,
    crate::secrets::SecretRefError,
    crate::postgres::connection::ConnectionStringError,
    crate::postgres::connection::DatasourceError,
    crate::postgres::connection::ConnectError,
    crate::postgres::readiness::ReadinessError,
    crate::postgres::tools::ToolError,
    crate::model::drill::DrillTargetError,
);

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        let code = if e.is_not_found() {
            "UserErrorNotFound"
        } else if e.is_archived() {
            "UserErrorRecoveryPointNotRehydrated"
        } else if e.is_disk_full() {
            "UserErrorDiskFull"
        } else if e.is_missing_folder() {
            "UserErrorVaultNotFound"
        } else if matches!(
            e,
            crate::store::StoreError::Json { .. } | crate::store::StoreError::TooLarge { .. }
        ) {
            // A file of the vault that is not what pgvault wrote: damaged, not unreachable.
            "VaultCorrupt"
        } else {
            "VaultStorageError"
        };
        Error::new(code, e.to_string())
    }
}

impl From<home::HomeError> for Error {
    fn from(e: home::HomeError) -> Self {
        Error::new("UserErrorPgvaultHome", e.to_string())
    }
}

impl From<crate::store::writer::WriteError> for Error {
    fn from(e: crate::store::writer::WriteError) -> Self {
        let code = match &e {
            crate::store::writer::WriteError::PackVanished(_) => "VaultDamaged",
            crate::store::writer::WriteError::Store(s) if s.is_disk_full() => "UserErrorDiskFull",
            _ => "VaultWriteError",
        };
        Error::new(code, e.to_string())
    }
}

impl From<crate::store::reader::ReadError> for Error {
    fn from(e: crate::store::reader::ReadError) -> Self {
        let code = match &e {
            crate::store::reader::ReadError::Write(_) => "RestoreTargetWriteFailed",
            crate::store::reader::ReadError::Store(s) if s.is_archived() => {
                "UserErrorRecoveryPointNotRehydrated"
            }
            // A pack that is gone is damage; a storage error that is not about the vault's
            // content (a full disk, a network failure, a permission) is not.
            crate::store::reader::ReadError::Store(s) if !s.is_not_found() => {
                if s.is_disk_full() {
                    "UserErrorDiskFull"
                } else {
                    "VaultStorageError"
                }
            }
            _ => RECOVERY_POINT_DAMAGED,
        };
        Error::new(code, e.to_string())
    }
}

/// The code of a read that met damage in the vault (see `From<ReadError>`).
pub const RECOVERY_POINT_DAMAGED: &str = "RecoveryPointDamaged";

/// A damaged read names the recovery point it was reading and says what to do about it.
pub(crate) fn damaged_point_guidance(e: Error, vault: &str, instance: &str, point: &str) -> Error {
    if e.code != RECOVERY_POINT_DAMAGED {
        return e;
    }
    Error::new(
        RECOVERY_POINT_DAMAGED,
        format!(
            "recovery point {point} of backup instance `{instance}` cannot be read back: {}. \
             Run `pgvault recovery-point verify --vault-name {vault} --backup-instance-name {instance} --recovery-point-id {point}` \
             to list everything that is damaged, and `pgvault backup-vault repair --vault-name {vault}` to take what \
             cannot be read out of the vault's index so new backups store it again; meanwhile restore an older recovery point.",
            e.message
        ),
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::store::lock::LockError> for Error {
    fn from(e: crate::store::lock::LockError) -> Self {
        let code = match e {
            crate::store::lock::LockError::Locked { .. } => "UserErrorVaultLocked",
            crate::store::lock::LockError::Busy { .. } => "UserErrorDestructiveOperationInProgress",
            crate::store::lock::LockError::Lost { .. } => "DestructiveOperationLockLost",
            crate::store::lock::LockError::Store(_) | crate::store::lock::LockError::Blob(_) => {
                "VaultStorageError"
            }
        };
        Error::new(code, e.to_string())
    }
}

impl From<crate::store::gc::GcError> for Error {
    fn from(e: crate::store::gc::GcError) -> Self {
        let code = match e {
            crate::store::gc::GcError::Damaged { .. } => "VaultDamaged",
            crate::store::gc::GcError::Store(_) => "VaultStorageError",
            crate::store::gc::GcError::Guard(e) => return e.into(),
        };
        Error::new(code, e.to_string())
    }
}
