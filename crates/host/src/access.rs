//! Who may use the REST API and the console, and what they changed.
//!
//! A token is 32 random bytes, printed once as `pgv_` and 43 base64url characters; the home
//! keeps only its SHA-256 (a token is a random secret of 256 bits, so a fast hash cannot be
//! searched backwards, and a lookup by hash takes the same time whatever the guess). Each token
//! has a name (unique among tokens not revoked) and one of Azure's three Backup roles.
//! Every request that changes something is written to the audit table with the token's
//! name; the jobs it starts also name it (`InitiatedBy`).
//!
//! The tables live in the job history's SQLite file (schema version 4, see
//! [`crate::history`]).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::rand::SecureRandom as _;
use rusqlite::{OptionalExtension as _, params};

use pgvault_core::engine::{Error, Result};
use pgvault_core::model::code::ErrorCode;

use crate::history::{JobHistory, db_time, parse_db_time};
use crate::service::{Pgvault, history_err};

/// Azure's Backup roles, weakest first: each may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Backup Reader: reads everything, changes nothing.
    Reader,
    /// Backup Operator: also backs up, restores, suspends and resumes protection.
    Operator,
    /// Backup Contributor: also creates, changes and deletes vaults, policies and instances.
    Contributor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Contributor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "Reader",
            Role::Operator => "Operator",
            Role::Contributor => "Contributor",
        }
    }

    /// Whether a token of this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UserErrorInvalidApiToken,
                    format!("`{s}` is not a role; use Reader, Operator or Contributor"),
                )
            })
    }
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    pub revoked: Option<DateTime<Utc>>,
}

/// The caller a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// One request that changed something, for the audit table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    pub token_name: String,
    pub role: Role,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub job_id: Option<String>,
}

const TOKEN_PREFIX: &str = "pgv_";

fn token_hash(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

fn check_token_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::UserErrorInvalidApiToken,
            format!("`{name}` is not a token name; use 1 to 64 letters, digits, `-`, `_` or `.`"),
        ))
    }
}

impl Pgvault {
    /// `api-token create`: a new token for `name` with `role`. The token is returned once and
    /// only its hash is kept.
    pub fn create_api_token(&self, name: &str, role: Role) -> Result<String> {
        check_token_name(name)?;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| {
                Error::new(
                    ErrorCode::InternalError,
                    "the system's random number generator failed; no token was made",
                )
            })?;
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let conn = self.history().conn();
        let taken: bool = conn
            .query_row(
                "SELECT 1 FROM api_tokens WHERE name = ?1 AND revoked_time IS NULL",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql_err)?
            .is_some();
        if taken {
            return Err(Error::new(
                ErrorCode::UserErrorApiTokenExists,
                format!(
                    "a token named `{name}` already exists; revoke it first (`pgvault api-token revoke --name {name}`) or choose another name"
                ),
            ));
        }
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_time) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), token_hash(&token), db_time(self.now())],
        )
        .map_err(sql_err)?;
        Ok(token)
    }

    /// `api-token list`: every token, revoked ones too, oldest first.
    pub fn api_tokens(&self) -> Result<Vec<TokenInfo>> {
        let conn = self.history().conn();
        let mut stmt = conn
            .prepare("SELECT name, role, created_time, revoked_time FROM api_tokens ORDER BY seq")
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err)?;
        rows.into_iter()
            .map(|(name, role, created, revoked)| {
                Ok(TokenInfo {
                    name,
                    role: role.parse()?,
                    created: read_time(&created)?,
                    revoked: revoked.as_deref().map(read_time).transpose()?,
                })
            })
            .collect()
    }

    /// `api-token revoke`: the token named `name` stops working at once.
    pub fn revoke_api_token(&self, name: &str) -> Result<()> {
        let changed = self
            .history()
            .conn()
            .execute(
                "UPDATE api_tokens SET revoked_time = ?2 WHERE name = ?1 AND revoked_time IS NULL",
                params![name, db_time(self.now())],
            )
            .map_err(sql_err)?;
        if changed == 0 {
            return Err(Error::new(
                ErrorCode::UserErrorApiTokenNotFound,
                format!("no token named `{name}` is valid (see `pgvault api-token list`)"),
            ));
        }
        Ok(())
    }

    /// The caller `token` names, or `None` for a token that is unknown or revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let found = self
            .history()
            .conn()
            .query_row(
                "SELECT name, role FROM api_tokens WHERE token_hash = ?1 AND revoked_time IS NULL",
                [token_hash(token)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(sql_err)?;
        found
            .map(|(name, role)| {
                Ok(Caller {
                    name,
                    role: role.parse()?,
                })
            })
            .transpose()
    }

    /// Records a request that changed something.
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        self.history()
            .conn()
            .execute(
                "INSERT INTO api_audit (time, token_name, role, method, path, status, job_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    db_time(entry.time),
                    entry.token_name,
                    entry.role.as_str(),
                    entry.method,
                    entry.path,
                    entry.status,
                    entry.job_id
                ],
            )
            .map_err(sql_err)?;
        Ok(())
    }

    /// The audit table, newest first, at most `limit` rows.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        audit_entries(self.history(), limit)
    }
}

fn audit_entries(history: &JobHistory, limit: usize) -> Result<Vec<AuditEntry>> {
    let conn = history.conn();
    let mut stmt = conn
        .prepare(
            "SELECT time, token_name, role, method, path, status, job_id FROM api_audit \
             ORDER BY seq DESC LIMIT ?1",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, u16>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .map_err(sql_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_err)?;
    rows.into_iter()
        .map(|(time, token_name, role, method, path, status, job_id)| {
            Ok(AuditEntry {
                time: read_time(&time)?,
                token_name,
                role: role.parse()?,
                method,
                path,
                status,
                job_id,
            })
        })
        .collect()
}

fn read_time(text: &str) -> Result<DateTime<Utc>> {
    parse_db_time(text).map_err(|e| {
        Error::new(
            ErrorCode::JobHistoryError,
            format!("job history: the time `{text}` in the API tables does not parse: {e}"),
        )
    })
}

fn sql_err(e: rusqlite::Error) -> Error {
    history_err(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgvault_core::engine::home::Home;

    fn service() -> (tempfile::TempDir, Pgvault) {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        (dir, svc)
    }

    #[test]
    fn a_token_authenticates_until_revoked_and_only_its_hash_is_kept() {
        let (dir, svc) = service();
        let token = svc.create_api_token("ops", Role::Operator).unwrap();
        assert!(
            token.starts_with("pgv_") && token.len() == 4 + 43,
            "{token}"
        );
        assert_eq!(
            svc.authenticate(&token).unwrap(),
            Some(Caller {
                name: "ops".into(),
                role: Role::Operator
            })
        );
        assert_eq!(svc.authenticate("pgv_wrong").unwrap(), None);
        assert_eq!(svc.authenticate(&token[..token.len() - 1]).unwrap(), None);
        let db = std::fs::read(svc.history().path()).unwrap();
        let secret = &token.as_bytes()[4..];
        assert!(
            !db.windows(secret.len()).any(|w| w == secret),
            "the token itself is in the history file"
        );

        svc.revoke_api_token("ops").unwrap();
        assert_eq!(svc.authenticate(&token).unwrap(), None);
        let listed = svc.api_tokens().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked.is_some());
        drop(dir);
    }

    #[test]
    fn names_are_unique_among_valid_tokens_and_checked() {
        let (_dir, svc) = service();
        svc.create_api_token("ci", Role::Reader).unwrap();
        let e = svc.create_api_token("ci", Role::Contributor).unwrap_err();
        assert_eq!(e.code, ErrorCode::UserErrorApiTokenExists);
        svc.revoke_api_token("ci").unwrap();
        svc.create_api_token("ci", Role::Contributor).unwrap();
        for bad in ["", "has space", "x/y", &"a".repeat(65)] {
            let e = svc.create_api_token(bad, Role::Reader).unwrap_err();
            assert_eq!(e.code, ErrorCode::UserErrorInvalidApiToken, "{bad}");
        }
        let e = svc.revoke_api_token("nobody").unwrap_err();
        assert_eq!(e.code, ErrorCode::UserErrorApiTokenNotFound);
    }

    #[test]
    fn roles_include_the_weaker_ones() {
        assert!(Role::Contributor.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Contributor));
        assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("Owner".parse::<Role>().is_err());
    }

    #[test]
    fn audit_entries_read_back_newest_first() {
        let (_dir, svc) = service();
        for (i, status) in [201u16, 409].into_iter().enumerate() {
            svc.audit(&AuditEntry {
                time: svc.now(),
                token_name: format!("t{i}"),
                role: Role::Contributor,
                method: "PUT".into(),
                path: "/subscriptions/x".into(),
                status,
                job_id: None,
            })
            .unwrap();
        }
        let got = svc.audit_entries(10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].token_name, "t1");
        assert_eq!(got[0].status, 409);
    }
}
