//! ARM's paths for `Microsoft.DataProtection`, parsed into what they name.
//!
//! Fixed segments (`resourceGroups`, `providers`, `backupVaults`...) match in any case, as ARM
//! matches them; names are taken as given (percent-decoded).

use pgvault_model::code::ErrorCode;

use crate::arm::ApiError;

/// A POST action on a backup instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    Backup,
    Restore,
    ValidateRestore,
    SuspendBackups,
    ResumeBackups,
    StopProtection,
    ResumeProtection,
    Rehydrate,
}

impl InstanceAction {
    const ALL: [(&'static str, InstanceAction); 8] = [
        ("backup", InstanceAction::Backup),
        ("restore", InstanceAction::Restore),
        ("validateRestore", InstanceAction::ValidateRestore),
        ("suspendBackups", InstanceAction::SuspendBackups),
        ("resumeBackups", InstanceAction::ResumeBackups),
        ("stopProtection", InstanceAction::StopProtection),
        ("resumeProtection", InstanceAction::ResumeProtection),
        ("rehydrate", InstanceAction::Rehydrate),
    ];

    fn parse(segment: &str) -> Option<InstanceAction> {
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(segment))
            .map(|(_, a)| *a)
    }
}

/// A vault by its resource group and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRef {
    pub group: String,
    pub vault: String,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The vaults of the subscription (`None`) or of one resource group.
    Vaults {
        group: Option<String>,
    },
    Vault(VaultRef),
    ValidateForBackup(VaultRef),
    Policies(VaultRef),
    Policy(VaultRef, String),
    Instances(VaultRef),
    Instance(VaultRef, String),
    InstanceAction(VaultRef, String, InstanceAction),
    RecoveryPoints(VaultRef, String),
    RecoveryPoint(VaultRef, String, String),
    Jobs(VaultRef),
    Job(VaultRef, String),
    /// `.../operationStatus/{id}` at any scope: the vault's, the group's, or a location's.
    OperationStatus(String),
    /// `.../operationResults/{id}` at any scope.
    OperationResult(String),
}

/// A name as it may be shown in an error: control characters dropped, at most 200 chars.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn decode(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidResourceType,
                "a path segment is not UTF-8 once percent-decoded",
            )
        })
}

/// Parses `path` (without the query) for the host's `subscription`.
pub fn parse(path: &str, subscription: &str) -> Result<Route, ApiError> {
    let raw: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let segs = raw
        .iter()
        .map(|s| decode(s))
        .collect::<Result<Vec<String>, ApiError>>()?;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let is = |i: usize, word: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(word));
    let unknown = || {
        ApiError::new(
            ErrorCode::InvalidResourceType,
            format!(
                "The resource path '{}' is not one of Microsoft.DataProtection's",
                printable(path)
            ),
        )
    };
    if !is(0, "subscriptions") || s.len() < 2 {
        return Err(unknown());
    }
    if !s[1].eq_ignore_ascii_case(subscription) {
        return Err(ApiError::new(
            ErrorCode::SubscriptionNotFound,
            format!(
                "The subscription '{}' could not be found; this host serves subscription '{subscription}'",
                printable(s[1])
            ),
        ));
    }
    let provider = |i: usize| is(i, "providers") && is(i + 1, "Microsoft.DataProtection");
    // /subscriptions/{sub}/providers/Microsoft.DataProtection/...
    if provider(2) {
        return match &s[4..] {
            [v] if v.eq_ignore_ascii_case("backupVaults") => Ok(Route::Vaults { group: None }),
            [l, _, k, id] if l.eq_ignore_ascii_case("locations") => {
                operation(k, id).ok_or_else(unknown)
            }
            _ => Err(unknown()),
        };
    }
    if !(is(2, "resourceGroups") && s.len() > 3 && provider(4)) {
        return Err(unknown());
    }
    let group = s[3].to_owned();
    let rest = &s[6..];
    let Some((first, rest)) = rest.split_first() else {
        return Err(unknown());
    };
    if !first.eq_ignore_ascii_case("backupVaults") {
        return match rest {
            [id] => operation(first, id).ok_or_else(unknown),
            _ => Err(unknown()),
        };
    }
    let Some((vault, rest)) = rest.split_first() else {
        return Ok(Route::Vaults { group: Some(group) });
    };
    let v = VaultRef {
        group,
        vault: (*vault).to_owned(),
    };
    let word = |w: &str, x: &str| w.eq_ignore_ascii_case(x);
    // The operations of the vault and of its instances.
    if let [k, id] | [_, _, k, id] = rest
        && (rest.len() == 2 || word(rest[0], "backupInstances"))
        && let Some(route) = operation(k, id)
    {
        return Ok(route);
    }
    let route = match rest {
        [] => Route::Vault(v),
        [a] if word(a, "validateForBackup") => Route::ValidateForBackup(v),
        [p] if word(p, "backupPolicies") => Route::Policies(v),
        [p, name] if word(p, "backupPolicies") => Route::Policy(v, (*name).to_owned()),
        [i] if word(i, "backupInstances") => Route::Instances(v),
        [i, name] if word(i, "backupInstances") => Route::Instance(v, (*name).to_owned()),
        [i, name, r] if word(i, "backupInstances") && word(r, "recoveryPoints") => {
            Route::RecoveryPoints(v, (*name).to_owned())
        }
        [i, name, r, id] if word(i, "backupInstances") && word(r, "recoveryPoints") => {
            Route::RecoveryPoint(v, (*name).to_owned(), (*id).to_owned())
        }
        [i, name, a] if word(i, "backupInstances") => match InstanceAction::parse(a) {
            Some(action) => Route::InstanceAction(v, (*name).to_owned(), action),
            None => return Err(unknown()),
        },
        [j] if word(j, "backupJobs") => Route::Jobs(v),
        [j, id] if word(j, "backupJobs") => Route::Job(v, (*id).to_owned()),
        _ => return Err(unknown()),
    };
    Ok(route)
}

fn operation(kind: &str, id: &str) -> Option<Route> {
    if kind.eq_ignore_ascii_case("operationStatus") {
        Some(Route::OperationStatus(id.to_owned()))
    } else if kind.eq_ignore_ascii_case("operationResults") {
        Some(Route::OperationResult(id.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn vault() -> VaultRef {
        VaultRef {
            group: "rg".into(),
            vault: "v1".into(),
        }
    }

    #[test]
    fn arm_paths_parse_to_what_they_name() {
        let base =
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DataProtection");
        let cases = [
            (
                format!("/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults"),
                Route::Vaults { group: None },
            ),
            (
                format!("{base}/backupVaults"),
                Route::Vaults {
                    group: Some("rg".into()),
                },
            ),
            (format!("{base}/backupVaults/v1"), Route::Vault(vault())),
            (
                format!("{base}/backupVaults/v1/validateForBackup"),
                Route::ValidateForBackup(vault()),
            ),
            (
                format!("{base}/backupVaults/v1/backupPolicies"),
                Route::Policies(vault()),
            ),
            (
                format!("{base}/backupVaults/v1/backupPolicies/p%201"),
                Route::Policy(vault(), "p 1".into()),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/"),
                Route::Instance(vault(), "i".into()),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/backup"),
                Route::InstanceAction(vault(), "i".into(), InstanceAction::Backup),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/resumeBackups"),
                Route::InstanceAction(vault(), "i".into(), InstanceAction::ResumeBackups),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/recoveryPoints"),
                Route::RecoveryPoints(vault(), "i".into()),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/recoveryPoints/rp"),
                Route::RecoveryPoint(vault(), "i".into(), "rp".into()),
            ),
            (
                format!("{base}/backupVaults/v1/backupInstances/i/operationResults/op"),
                Route::OperationResult("op".into()),
            ),
            (
                format!("{base}/backupVaults/v1/backupJobs"),
                Route::Jobs(vault()),
            ),
            (
                format!("{base}/backupVaults/v1/backupJobs/j"),
                Route::Job(vault(), "j".into()),
            ),
            (
                format!("{base}/backupVaults/v1/operationStatus/op"),
                Route::OperationStatus("op".into()),
            ),
            (
                format!("{base}/backupVaults/v1/operationResults/op"),
                Route::OperationResult("op".into()),
            ),
            (
                format!("{base}/operationStatus/op"),
                Route::OperationStatus("op".into()),
            ),
            (
                format!(
                    "/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westus/operationStatus/op"
                ),
                Route::OperationStatus("op".into()),
            ),
            (
                format!(
                    "/SUBSCRIPTIONS/{SUB}/resourcegroups/rg/PROVIDERS/microsoft.dataprotection/BACKUPVAULTS/v1"
                ),
                Route::Vault(vault()),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse(&path, SUB).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn other_paths_are_refused_with_arms_codes() {
        let base =
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DataProtection");
        for path in [
            "/".to_string(),
            "/subscriptions".to_string(),
            format!("/subscriptions/{SUB}/resourceGroups/rg"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x"
            ),
            format!("{base}/backupVaults/v1/backupInstances/i/explode"),
            format!("{base}/backupVaults/v1/backupInstances/i/recoveryPoints/rp/more"),
            format!("{base}/backupVaults/v1/%FF"),
        ] {
            let e = parse(&path, SUB).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidResourceType, "{path}");
            assert_eq!(e.status.as_u16(), 400);
        }
        let e = parse("/subscriptions/11111111-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults", SUB).unwrap_err();
        assert_eq!(e.code, ErrorCode::SubscriptionNotFound);
        assert_eq!(e.status.as_u16(), 404);
    }
}
