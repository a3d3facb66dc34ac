//! Scheduled restore drills: pgvault's extension to a policy, and when a drill is due.
//!
//! A policy asks for drills with an optional, clearly pgvault-specific object beside Azure's
//! properties (Azure has no such thing, so `backup-policy validate --azure-compatible` warns
//! about it):
//!
//! ```json
//! "pgvaultRestoreDrill": {
//!   "every": "P1M",                       // or "afterBackups": 4
//!   "targetServerUrl": "postgres://drills.example:5432/postgres",
//!   "secretStoreType": "File",            // optional: inferred from the URI
//!   "secretStoreUri": "file:///etc/pgvault/drills.secret"
//! }
//! ```
//!
//! Every protected instance under the policy then has its latest recovery point restored to
//! that server (into a scratch database, dropped afterwards) and compared with what its backup
//! recorded. When is pure: [`drill_due`] takes the instance's drill and backup history and the
//! time, and says whether one is due and why.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::connection::{Datasource, DatasourceError};
use crate::duration::IsoDuration;
use crate::secret::{SecretRef, SecretRefError, SecretStoreType};

/// The policy property that asks for drills.
pub const POLICY_PROPERTY: &str = "pgvaultRestoreDrill";

/// How often an instance is drilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillCadence {
    /// A drill once this long after the last one started (calendar arithmetic: `P1M` is a
    /// month).
    Every(IsoDuration),
    /// A drill once this many backups have completed since the last one started.
    AfterBackups(u32),
}

impl fmt::Display for DrillCadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrillCadence::Every(d) => write!(f, "every {d}"),
            DrillCadence::AfterBackups(1) => write!(f, "after every backup"),
            DrillCadence::AfterBackups(n) => write!(f, "after every {n} backups"),
        }
    }
}

/// Where a drill restores: a server (the URL's database is only where the drill's sessions
/// start; the scratch database is created beside it) and the credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillTarget {
    pub server: Datasource,
    pub secret: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrillTargetError {
    #[error("the target server: {0}")]
    Server(#[from] DatasourceError),
    #[error("the target's secret: {0}")]
    Secret(#[from] SecretRefError),
}

impl DrillTargetError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DrillTargetError::Server(e) => e.code(),
            DrillTargetError::Secret(e) => e.code(),
        }
    }
}

impl DrillTarget {
    /// A target as `restore initialize-for-data-recovery` takes one: a
    /// `postgres://host:port/anydb` URL and a secret reference whose store type is inferred
    /// from the URI when not given.
    pub fn parse(
        target_server_url: &str,
        secret_store_type: Option<&str>,
        secret_store_uri: &str,
    ) -> Result<Self, DrillTargetError> {
        let server: Datasource = target_server_url.parse()?;
        let store_type: SecretStoreType = match secret_store_type {
            Some(t) => t.parse()?,
            None => secret_store_uri.parse::<SecretRef>()?.store_type(),
        };
        let secret = SecretRef::from_store(store_type, secret_store_uri)?;
        Ok(DrillTarget { server, secret })
    }
}

/// A policy's `pgvaultRestoreDrill`: how often, and where. Parsed whole at the boundary:
/// exactly one cadence, a positive one, a target URL and a secret reference that parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSettings", into = "RawSettings")]
pub struct RestoreDrillSettings {
    cadence: DrillCadence,
    target: DrillTarget,
    /// As written, so the policy prints back as it was given.
    raw: RawSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_backups: Option<u32>,
    target_server_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_store_type: Option<String>,
    secret_store_uri: String,
}

impl TryFrom<RawSettings> for RestoreDrillSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, Self::Error> {
        let cadence = match (&raw.every, raw.after_backups) {
            (Some(_), Some(_)) => {
                return Err("give either every (a duration such as P1M) or afterBackups (a number of backups), not both".into());
            }
            (None, None) => {
                return Err("say how often to drill: every (a duration such as P1M) or afterBackups (a number of backups)".into());
            }
            (Some(every), None) if every.is_zero() => {
                return Err("every must be a positive duration such as P1W or P1M".into());
            }
            (Some(every), None) => DrillCadence::Every(*every),
            (None, Some(0)) => return Err("afterBackups must be 1 or more".into()),
            (None, Some(n)) => DrillCadence::AfterBackups(n),
        };
        let target = DrillTarget::parse(
            &raw.target_server_url,
            raw.secret_store_type.as_deref(),
            &raw.secret_store_uri,
        )
        .map_err(|e| e.to_string())?;
        Ok(RestoreDrillSettings {
            cadence,
            target,
            raw,
        })
    }
}

impl From<RestoreDrillSettings> for RawSettings {
    fn from(settings: RestoreDrillSettings) -> Self {
        settings.raw
    }
}

impl RestoreDrillSettings {
    pub fn cadence(&self) -> &DrillCadence {
        &self.cadence
    }

    pub fn target(&self) -> &DrillTarget {
        &self.target
    }
}

/// An instance's history as far as drills care, read from the job history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrillHistory {
    /// When the instance's last drill started, whatever its outcome.
    pub last_drill: Option<DateTime<Utc>>,
    /// Backups that completed and started after the last drill (or ever, before the first).
    pub backups_since: u32,
    /// Whether the instance has a recovery point in the vault tier to drill.
    pub has_recovery_point: bool,
}

/// Why a drill is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillReason {
    /// The instance has never been drilled.
    FirstDrill,
    /// The cadence's period passed since the last drill: it was due at `due`.
    PeriodElapsed { due: DateTime<Utc> },
    /// This many backups completed since the last drill.
    BackupsTaken { count: u32 },
}

impl fmt::Display for DrillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrillReason::FirstDrill => write!(f, "the instance has not been drilled yet"),
            DrillReason::PeriodElapsed { due } => {
                write!(f, "due since {}", due.to_rfc3339())
            }
            DrillReason::BackupsTaken { count: 1 } => {
                write!(f, "1 backup since the last drill")
            }
            DrillReason::BackupsTaken { count } => {
                write!(f, "{count} backups since the last drill")
            }
        }
    }
}

/// Whether a drill is due at `now`, and why.
///
/// Nothing is due without a recovery point to drill. `every`: the first drill is due at once,
/// later ones `every` after the last one started (a failed drill counts: it is not retried
/// before the next period, as a failed scheduled backup is not). `afterBackups`: due once that
/// many backups have completed since the last drill started, or ever when there was none.
pub fn drill_due(
    cadence: &DrillCadence,
    history: &DrillHistory,
    now: DateTime<Utc>,
) -> Option<DrillReason> {
    if !history.has_recovery_point {
        return None;
    }
    match cadence {
        DrillCadence::Every(every) => match history.last_drill {
            None => Some(DrillReason::FirstDrill),
            Some(last) => {
                let due = every.checked_add_to(last)?;
                (due <= now).then_some(DrillReason::PeriodElapsed { due })
            }
        },
        DrillCadence::AfterBackups(n) => {
            (history.backups_since >= *n).then_some(match history.last_drill {
                None => DrillReason::FirstDrill,
                Some(_) => DrillReason::BackupsTaken {
                    count: history.backups_since,
                },
            })
        }
    }
}

/// When the next drill falls due by the clock alone, if one will: `every` after the last drill.
/// (A drill after backups falls due when a backup finishes, which the host notices anyway.)
pub fn next_drill_time(cadence: &DrillCadence, history: &DrillHistory) -> Option<DateTime<Utc>> {
    match (cadence, history.last_drill) {
        (DrillCadence::Every(every), Some(last)) if history.has_recovery_point => {
            every.checked_add_to(last)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn settings(json: serde_json::Value) -> Result<RestoreDrillSettings, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    #[test]
    fn when_a_drill_is_due() {
        let monthly = DrillCadence::Every("P1M".parse().unwrap());
        let after_two = DrillCadence::AfterBackups(2);
        let h = |last: Option<&str>, backups: u32, rp: bool| DrillHistory {
            last_drill: last.map(t),
            backups_since: backups,
            has_recovery_point: rp,
        };
        let now = t("2041-03-31T12:00:00Z");
        // (cadence, history, expected)
        let cases: Vec<(&DrillCadence, DrillHistory, Option<DrillReason>)> = vec![
            // Nothing to drill yet.
            (&monthly, h(None, 3, false), None),
            (&after_two, h(None, 5, false), None),
            // Never drilled: at once.
            (&monthly, h(None, 0, true), Some(DrillReason::FirstDrill)),
            // A month after the last drill, by the calendar: Feb 28 + P1M is Mar 28.
            (
                &monthly,
                h(Some("2041-02-28T12:00:00Z"), 0, true),
                Some(DrillReason::PeriodElapsed {
                    due: t("2041-03-28T12:00:00Z"),
                }),
            ),
            // Not yet a month.
            (&monthly, h(Some("2041-03-01T12:00:01Z"), 9, true), None),
            // After backups: counted since the last drill.
            (&after_two, h(Some("2041-03-30T00:00:00Z"), 1, true), None),
            (
                &after_two,
                h(Some("2041-03-30T00:00:00Z"), 2, true),
                Some(DrillReason::BackupsTaken { count: 2 }),
            ),
            (&after_two, h(None, 3, true), Some(DrillReason::FirstDrill)),
            (&after_two, h(None, 1, true), None),
        ];
        for (cadence, history, expected) in cases {
            assert_eq!(
                drill_due(cadence, &history, now),
                expected,
                "{cadence}, {history:?}"
            );
        }
        // Due exactly when the period ends, not a moment before.
        let last = h(Some("2041-02-28T12:00:00Z"), 0, true);
        assert_eq!(drill_due(&monthly, &last, t("2041-03-28T11:59:59Z")), None);
        assert!(drill_due(&monthly, &last, t("2041-03-28T12:00:00Z")).is_some());
        assert_eq!(
            next_drill_time(&monthly, &last),
            Some(t("2041-03-28T12:00:00Z"))
        );
        assert_eq!(next_drill_time(&after_two, &last), None);
        assert_eq!(next_drill_time(&monthly, &h(None, 0, true)), None);
    }

    #[test]
    fn settings_parse_at_the_boundary() {
        let ok = settings(serde_json::json!({
            "every": "P1M",
            "targetServerUrl": "postgres://drills.example:5432/postgres",
            "secretStoreUri": "env:DRILL_SECRET"
        }))
        .unwrap();
        assert_eq!(ok.cadence(), &DrillCadence::Every(IsoDuration::months(1)));
        assert_eq!(ok.target().server.host(), "drills.example");
        assert_eq!(
            ok.target().secret.store_type(),
            SecretStoreType::Environment
        );
        // Printed back as given.
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({
                "every": "P1M",
                "targetServerUrl": "postgres://drills.example:5432/postgres",
                "secretStoreUri": "env:DRILL_SECRET"
            })
        );
        let after = settings(serde_json::json!({
            "afterBackups": 4,
            "targetServerUrl": "postgres://drills.example/postgres",
            "secretStoreType": "File",
            "secretStoreUri": "file:///etc/pgvault/drills.secret"
        }))
        .unwrap();
        assert_eq!(after.cadence(), &DrillCadence::AfterBackups(4));

        // (settings, a fragment of the error)
        let target = "postgres://drills.example/postgres";
        let refused = [
            (
                serde_json::json!({"targetServerUrl": target, "secretStoreUri": "env:X"}),
                "say how often",
            ),
            (
                serde_json::json!({"every": "P1W", "afterBackups": 2, "targetServerUrl": target, "secretStoreUri": "env:X"}),
                "not both",
            ),
            (
                serde_json::json!({"every": "PT0S", "targetServerUrl": target, "secretStoreUri": "env:X"}),
                "positive",
            ),
            (
                serde_json::json!({"afterBackups": 0, "targetServerUrl": target, "secretStoreUri": "env:X"}),
                "1 or more",
            ),
            (
                serde_json::json!({"every": "P1W", "targetServerUrl": "postgres://u:pw@h/db", "secretStoreUri": "env:X"}),
                "target server",
            ),
            (
                serde_json::json!({"every": "P1W", "targetServerUrl": target, "secretStoreType": "File", "secretStoreUri": "env:X"}),
                "secret",
            ),
        ];
        for (json, fragment) in refused {
            let err = settings(json.clone()).unwrap_err();
            assert!(err.contains(fragment), "{json}: {err}");
        }
    }
}
