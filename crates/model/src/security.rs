//! A vault's security settings, as Azure's `securitySettings`: soft delete
//! (`softDeleteSettings`: `state` Off, On or AlwaysOn, `retentionDurationInDays` 14 to 180) and
//! immutability (`immutabilitySettings.state`: Disabled, Unlocked or Locked), with the rules of
//! how they may change, and a deleted backup instance's `deletionInfo`.
//!
//! The rules are Azure Backup's: soft delete Off can be turned On (and On back Off), AlwaysOn is
//! for good; immutability Unlocked can be disabled again, Locked is for good. Changes are pure
//! here ([`SecuritySettings::apply`]): the caller gets the new settings and the list of what a
//! change weakened (for alerts), or the refusal with its code, before anything is written.
//!
//! What immutability forbids is also decided here ([`SecuritySettings::check_removal`]): with
//! Unlocked or Locked, nothing removes a recovery point before its expiry, so each destructive
//! path asks this one function with the point's expiry and the time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;

/// Azure's default and minimum soft-delete retention, in days.
pub const DEFAULT_SOFT_DELETE_DAYS: u32 = 14;
/// The longest soft-delete retention Azure allows, in days.
pub const MAX_SOFT_DELETE_DAYS: u32 = 180;

/// Declares a settings enum whose names are Azure's, parsed in any case, with the REST API's
/// older spellings as aliases.
macro_rules! state_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($variant:ident $(| $alias:literal)*),* } $what:literal) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            #[default]
            $($variant),*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),*
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $(
                    if s.eq_ignore_ascii_case(stringify!($variant))
                        $(|| s.eq_ignore_ascii_case($alias))*
                    {
                        return Ok($name::$variant);
                    }
                )*
                Err(format!(
                    "`{s}` is not a {}: use {}",
                    $what,
                    [$(stringify!($variant)),*].join(", ")
                ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

state_enum! {
    /// Soft delete's state. Azure's REST examples also write `Enabled` and `Disabled`; they
    /// read as On and Off.
    SoftDeleteState { Off | "Disabled", On | "Enabled", AlwaysOn } "soft delete state"
}

state_enum! {
    /// Immutability's state: Unlocked and Locked both make the vault immutable; only Locked
    /// cannot be undone.
    ImmutabilityState { Disabled, Unlocked, Locked } "immutability state"
}

fn default_days() -> u32 {
    DEFAULT_SOFT_DELETE_DAYS
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftDeleteSettings {
    #[serde(default)]
    pub state: SoftDeleteState,
    #[serde(default = "default_days")]
    pub retention_duration_in_days: u32,
}

impl Default for SoftDeleteSettings {
    fn default() -> Self {
        SoftDeleteSettings {
            state: SoftDeleteState::Off,
            retention_duration_in_days: DEFAULT_SOFT_DELETE_DAYS,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImmutabilitySettings {
    #[serde(default)]
    pub state: ImmutabilityState,
}

/// Azure's `securitySettings` of a vault, as `vault.json` keeps them and the vault's JSON
/// shows them. A `vault.json` written before pgvault had them reads as soft delete Off and
/// immutability Disabled: what such a vault did (deletions were immediate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySettings {
    #[serde(default)]
    pub soft_delete_settings: SoftDeleteSettings,
    #[serde(default)]
    pub immutability_settings: ImmutabilitySettings,
}

/// A change asked for (`backup-vault create|update`, or the REST API's PUT or PATCH): each
/// field only when given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecurityChange {
    pub soft_delete_state: Option<SoftDeleteState>,
    pub retention_duration_in_days: Option<u32>,
    pub immutability_state: Option<ImmutabilityState>,
}

impl SecurityChange {
    pub fn is_empty(&self) -> bool {
        *self == SecurityChange::default()
    }
}

impl SecurityChange {
    /// The change an Azure `securitySettings` object asks for (the REST API's vault PUT or
    /// PATCH body's `properties.securitySettings`): each setting only when present, names in
    /// any case.
    pub fn from_azure(value: &serde_json::Value) -> Result<SecurityChange, SecurityError> {
        let bad = |why: String| {
            SecurityError::new(
                ErrorCode::UserErrorInvalidSecuritySetting,
                format!("properties.securitySettings: {why}"),
            )
        };
        let field = |v: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
            v.as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_null())
        };
        if !value.is_object() {
            return Err(bad("must be an object".into()));
        }
        let mut change = SecurityChange::default();
        if let Some(soft) = field(value, "softDeleteSettings") {
            if let Some(state) = field(&soft, "state") {
                let state = state.as_str().ok_or_else(|| {
                    bad(format!("softDeleteSettings.state {state} is not a string"))
                })?;
                change.soft_delete_state = Some(state.parse().map_err(bad)?);
            }
            if let Some(days) = field(&soft, "retentionDurationInDays") {
                let whole = days
                    .as_f64()
                    .filter(|d| d.fract() == 0.0 && *d >= 0.0 && *d <= f64::from(u32::MAX))
                    .ok_or_else(|| bad(format!("softDeleteSettings.retentionDurationInDays {days} is not a whole number of days")))?;
                change.retention_duration_in_days = Some(whole as u32);
            }
        }
        if let Some(imm) = field(value, "immutabilitySettings")
            && let Some(state) = field(&imm, "state")
        {
            let state = state.as_str().ok_or_else(|| {
                bad(format!(
                    "immutabilitySettings.state {state} is not a string"
                ))
            })?;
            change.immutability_state = Some(state.parse().map_err(bad)?);
        }
        Ok(change)
    }
}

/// A refused setting or operation: its code and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SecurityError {}

impl SecurityError {
    fn new(code: ErrorCode, message: String) -> Self {
        SecurityError { code, message }
    }
}

impl SecuritySettings {
    /// Whether a deletion keeps its data for the retention days.
    pub fn soft_delete_on(&self) -> bool {
        self.soft_delete_settings.state != SoftDeleteState::Off
    }

    /// How long soft-deleted data is kept.
    pub fn soft_delete_retention(&self) -> TimeDelta {
        TimeDelta::days(i64::from(
            self.soft_delete_settings.retention_duration_in_days,
        ))
    }

    /// Whether the vault is immutable (Unlocked or Locked).
    pub fn immutable(&self) -> bool {
        self.immutability_settings.state != ImmutabilityState::Disabled
    }

    /// The settings after `change`, and what it weakened (each a sentence, for alerts and the
    /// log), or why it is refused: a retention outside 14 to 180 days, AlwaysOn soft delete
    /// turned down or its retention shortened, Locked immutability changed.
    pub fn apply(
        &self,
        vault: &str,
        change: &SecurityChange,
    ) -> Result<(SecuritySettings, Vec<String>), SecurityError> {
        let mut next = *self;
        if let Some(days) = change.retention_duration_in_days {
            if !(DEFAULT_SOFT_DELETE_DAYS..=MAX_SOFT_DELETE_DAYS).contains(&days) {
                return Err(SecurityError::new(
                    ErrorCode::UserErrorInvalidSoftDeleteRetention,
                    format!(
                        "--retention-duration-in-days {days} is outside {DEFAULT_SOFT_DELETE_DAYS} to {MAX_SOFT_DELETE_DAYS} days"
                    ),
                ));
            }
            next.soft_delete_settings.retention_duration_in_days = days;
        }
        if let Some(state) = change.soft_delete_state {
            next.soft_delete_settings.state = state;
        }
        if let Some(state) = change.immutability_state {
            next.immutability_settings.state = state;
        }
        let (was, now) = (self.soft_delete_settings, next.soft_delete_settings);
        if was.state == SoftDeleteState::AlwaysOn && now.state != SoftDeleteState::AlwaysOn {
            return Err(SecurityError::new(
                ErrorCode::UserErrorUnsupportedSoftDeleteStateChange,
                format!(
                    "soft delete of vault `{vault}` is AlwaysOn, which cannot be undone: it cannot be set to {}",
                    now.state
                ),
            ));
        }
        if was.state == SoftDeleteState::AlwaysOn
            && now.retention_duration_in_days < was.retention_duration_in_days
        {
            return Err(SecurityError::new(
                ErrorCode::UserErrorUnsupportedSoftDeleteStateChange,
                format!(
                    "soft delete of vault `{vault}` is AlwaysOn: its retention of {} days cannot be shortened to {}",
                    was.retention_duration_in_days, now.retention_duration_in_days
                ),
            ));
        }
        let (was_i, now_i) = (
            self.immutability_settings.state,
            next.immutability_settings.state,
        );
        if was_i == ImmutabilityState::Locked && now_i != ImmutabilityState::Locked {
            return Err(SecurityError::new(
                ErrorCode::UserErrorUnsupportedVaultImmutabilityStateChange,
                format!(
                    "vault `{vault}` is immutable and Locked, which cannot be undone: it cannot be set to {now_i}"
                ),
            ));
        }
        let mut weakened = Vec::new();
        if self.soft_delete_on() && !next.soft_delete_on() {
            weakened.push(format!("soft delete of vault `{vault}` was turned Off"));
        } else if next.soft_delete_on()
            && now.retention_duration_in_days < was.retention_duration_in_days
        {
            weakened.push(format!(
                "the soft-delete retention of vault `{vault}` was shortened from {} to {} days",
                was.retention_duration_in_days, now.retention_duration_in_days
            ));
        }
        if self.immutable() && !next.immutable() {
            weakened.push(format!(
                "immutability of vault `{vault}` was Disabled (it was {was_i})"
            ));
        }
        Ok((next, weakened))
    }

    /// Refuses removing `what` (a recovery point, described for the message) that expires at
    /// `expiry` (`None`: kept for ever) at `now` when the vault is immutable; `operation` says
    /// what would remove it. Nothing is refused on a vault that is not immutable, nor once the
    /// expiry has passed.
    pub fn check_removal(
        &self,
        vault: &str,
        operation: &str,
        what: &str,
        expiry: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), SecurityError> {
        if !self.immutable() || expiry.is_some_and(|e| e <= now) {
            return Ok(());
        }
        let until = match expiry {
            Some(e) => format!("until its expiry at {}", e.to_rfc3339()),
            None => "for ever (it has no expiry)".to_owned(),
        };
        Err(SecurityError::new(
            ErrorCode::UserErrorImmutableVaultOperationNotAllowed,
            format!(
                "{operation} is refused: vault `{vault}` is immutable (immutabilityState {}), so {what} is kept {until}",
                self.immutability_settings.state
            ),
        ))
    }
}

/// Azure's `deletionInfo` of a soft-deleted backup instance (or recovery point): when it was
/// deleted, when its data will be purged, and the activity that deleted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionInfo {
    pub deletion_time: DateTime<Utc>,
    /// Soft-deleted data is kept at no charge (as in Azure): billing ends at the deletion.
    pub billing_end_date: DateTime<Utc>,
    pub scheduled_purge_time: DateTime<Utc>,
    /// The job that deleted it.
    #[serde(rename = "deleteActivityID")]
    pub delete_activity_id: String,
}

impl DeletionInfo {
    /// A deletion at `now` under `settings`, by the activity `activity`.
    pub fn new(settings: &SecuritySettings, now: DateTime<Utc>, activity: &str) -> Self {
        DeletionInfo {
            deletion_time: now,
            billing_end_date: now,
            scheduled_purge_time: now + settings.soft_delete_retention(),
            delete_activity_id: activity.to_owned(),
        }
    }

    /// Whether the purge is due at `at`.
    pub fn purge_due(&self, at: DateTime<Utc>) -> bool {
        self.scheduled_purge_time <= at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ImmutabilityState::*;
    use SoftDeleteState::*;

    fn settings(soft: SoftDeleteState, days: u32, imm: ImmutabilityState) -> SecuritySettings {
        SecuritySettings {
            soft_delete_settings: SoftDeleteSettings {
                state: soft,
                retention_duration_in_days: days,
            },
            immutability_settings: ImmutabilitySettings { state: imm },
        }
    }

    fn change(
        soft: Option<SoftDeleteState>,
        days: Option<u32>,
        imm: Option<ImmutabilityState>,
    ) -> SecurityChange {
        SecurityChange {
            soft_delete_state: soft,
            retention_duration_in_days: days,
            immutability_state: imm,
        }
    }

    /// Every transition: allowed ones give the new settings and what they weakened; refused
    /// ones their code.
    #[test]
    fn transitions_follow_azures_rules() {
        type Row = (
            SecuritySettings,
            SecurityChange,
            Result<(SecuritySettings, usize), &'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                settings(Off, 14, Disabled),
                change(Some(On), None, None),
                Ok((settings(On, 14, Disabled), 0)),
            ),
            (
                settings(On, 14, Disabled),
                change(Some(Off), None, None),
                Ok((settings(Off, 14, Disabled), 1)),
            ),
            (
                settings(On, 30, Disabled),
                change(None, Some(14), None),
                Ok((settings(On, 14, Disabled), 1)),
            ),
            (
                settings(Off, 30, Disabled),
                change(None, Some(14), None),
                Ok((settings(Off, 14, Disabled), 0)),
            ),
            (
                settings(On, 14, Disabled),
                change(Some(AlwaysOn), Some(90), None),
                Ok((settings(AlwaysOn, 90, Disabled), 0)),
            ),
            (
                settings(AlwaysOn, 14, Disabled),
                change(Some(On), None, None),
                Err("UserErrorUnsupportedSoftDeleteStateChange"),
            ),
            (
                settings(AlwaysOn, 14, Disabled),
                change(Some(Off), None, None),
                Err("UserErrorUnsupportedSoftDeleteStateChange"),
            ),
            (
                settings(AlwaysOn, 30, Disabled),
                change(None, Some(20), None),
                Err("UserErrorUnsupportedSoftDeleteStateChange"),
            ),
            (
                settings(AlwaysOn, 30, Disabled),
                change(None, Some(60), None),
                Ok((settings(AlwaysOn, 60, Disabled), 0)),
            ),
            (
                settings(Off, 14, Disabled),
                change(None, Some(13), None),
                Err("UserErrorInvalidSoftDeleteRetention"),
            ),
            (
                settings(Off, 14, Disabled),
                change(None, Some(181), None),
                Err("UserErrorInvalidSoftDeleteRetention"),
            ),
            (
                settings(Off, 14, Disabled),
                change(None, None, Some(Unlocked)),
                Ok((settings(Off, 14, Unlocked), 0)),
            ),
            (
                settings(Off, 14, Unlocked),
                change(None, None, Some(Disabled)),
                Ok((settings(Off, 14, Disabled), 1)),
            ),
            (
                settings(Off, 14, Unlocked),
                change(None, None, Some(Locked)),
                Ok((settings(Off, 14, Locked), 0)),
            ),
            (
                settings(Off, 14, Disabled),
                change(None, None, Some(Locked)),
                Ok((settings(Off, 14, Locked), 0)),
            ),
            (
                settings(Off, 14, Locked),
                change(None, None, Some(Unlocked)),
                Err("UserErrorUnsupportedVaultImmutabilityStateChange"),
            ),
            (
                settings(Off, 14, Locked),
                change(None, None, Some(Disabled)),
                Err("UserErrorUnsupportedVaultImmutabilityStateChange"),
            ),
            (
                settings(Off, 14, Locked),
                change(Some(On), None, Some(Locked)),
                Ok((settings(On, 14, Locked), 0)),
            ),
            (
                settings(On, 14, Unlocked),
                change(Some(Off), None, Some(Disabled)),
                Ok((settings(Off, 14, Disabled), 2)),
            ),
        ];
        for (i, (from, change, expected)) in rows.into_iter().enumerate() {
            let got = from.apply("V", &change);
            match (got, expected) {
                (Ok((next, weakened)), Ok((want, n))) => {
                    assert_eq!(next, want, "row {i}");
                    assert_eq!(weakened.len(), n, "row {i}: {weakened:?}");
                }
                (Err(e), Err(code)) => {
                    assert_eq!(e.code.as_str(), code, "row {i}");
                    let about_days = e.code == ErrorCode::UserErrorInvalidSoftDeleteRetention;
                    assert!(e.message.contains("`V`") || about_days, "row {i}: {e}");
                }
                (got, want) => panic!("row {i}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn immutability_refuses_removal_before_expiry_only() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let now = t("2030-01-01T00:00:00Z");
        let later = Some(t("2030-06-01T00:00:00Z"));
        let earlier = Some(t("2029-06-01T00:00:00Z"));
        for state in [Unlocked, Locked] {
            let s = settings(Off, 14, state);
            let err = s
                .check_removal("V", "deleting", "point p", later, now)
                .unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::UserErrorImmutableVaultOperationNotAllowed
            );
            assert!(
                err.message.contains(&format!("immutabilityState {state}")),
                "{err}"
            );
            assert!(err.message.contains("2030-06-01"), "{err}");
            assert!(s.check_removal("V", "deleting", "p", None, now).is_err());
            s.check_removal("V", "deleting", "p", earlier, now).unwrap();
        }
        settings(On, 14, Disabled)
            .check_removal("V", "deleting", "p", later, now)
            .unwrap();
    }

    /// Old `vault.json` files have no settings; Azure's JSON spellings read in any case, and
    /// the REST examples' Enabled/Disabled as On/Off.
    #[test]
    fn settings_read_old_and_azure_spellings() {
        let old: SecuritySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(old, SecuritySettings::default());
        assert!(!old.soft_delete_on() && !old.immutable());
        let azure: SecuritySettings = serde_json::from_str(
            r#"{"softDeleteSettings": {"state": "Enabled", "retentionDurationInDays": 14},
                "immutabilitySettings": {"state": "unlocked"}}"#,
        )
        .unwrap();
        assert_eq!(azure, settings(On, 14, Unlocked));
        assert_eq!(
            serde_json::to_value(azure).unwrap(),
            serde_json::json!({"softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
                "immutabilitySettings": {"state": "Unlocked"}})
        );
        let err = "Sometimes".parse::<SoftDeleteState>().unwrap_err();
        assert!(err.contains("Off, On, AlwaysOn"), "{err}");
    }

    #[test]
    fn a_rest_body_names_only_what_it_changes() {
        let v = serde_json::json!({"softDeleteSettings": {"State": "AlwaysOn", "retentionDurationInDays": 30.0}});
        assert_eq!(
            SecurityChange::from_azure(&v).unwrap(),
            change(Some(AlwaysOn), Some(30), None)
        );
        let v = serde_json::json!({"immutabilitySettings": {"state": "Locked"}});
        assert_eq!(
            SecurityChange::from_azure(&v).unwrap(),
            change(None, None, Some(Locked))
        );
        for bad in [
            serde_json::json!({"softDeleteSettings": {"state": "Maybe"}}),
            serde_json::json!({"softDeleteSettings": {"retentionDurationInDays": 14.5}}),
            serde_json::json!({"immutabilitySettings": {"state": 3}}),
            serde_json::json!("On"),
        ] {
            let err = SecurityChange::from_azure(&bad).unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::UserErrorInvalidSecuritySetting,
                "{bad}"
            );
        }
    }

    #[test]
    fn deletion_info_purges_after_the_retention() {
        let now = "2030-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let info = DeletionInfo::new(&settings(On, 30, Disabled), now, "job-1");
        assert_eq!(info.scheduled_purge_time, now + TimeDelta::days(30));
        assert!(!info.purge_due(now + TimeDelta::days(29)));
        assert!(info.purge_due(now + TimeDelta::days(30)));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["deleteActivityID"], "job-1");
        assert!(json["scheduledPurgeTime"].is_string());
    }
}
