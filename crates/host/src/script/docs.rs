//! `docs/scripting.md`: the script API as a page, rendered from the same [`DOCS`] table that
//! `help()` reads, plus the shapes of the values scripts handle ([`SHAPES`]).
//!
//! The page is generated rather than written so that it cannot drift from the API: a test
//! renders it and compares it with the committed file (regenerate with
//! `PGVAULT_UPDATE_SNAPSHOTS=1`), `help.rs`'s tests tie [`DOCS`] to the registered functions,
//! and this module's tests check every field path [`SHAPES`] names against a value the
//! engine really returns.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::help::{DOCS, Doc, Group};

/// What a script reads out of a value: a path into it and what it means.
pub(super) struct Shape {
    pub title: &'static str,
    /// The functions that return it.
    pub from: &'static str,
    pub about: &'static str,
    /// `properties.status`, `policyRules[0].name`: a path a script can write after a value.
    pub fields: &'static [(&'static str, &'static str)],
}

pub(super) const SHAPES: &[Shape] = &[
    Shape {
        title: "The Vault handle",
        from: "`new_vault`, `vault`, `vaults`",
        about: "A handle on a registered vault, not a copy of it: every method reads the vault \
afresh, so a handle kept across a long script sees what other processes changed. Its one \
property is `name`; `vault.to_json()` gives the Azure resource (as `Get-AzDataProtectionBackupVault` \
does), whose fields are below.",
        fields: &[
            ("name", "the vault's name"),
            ("id", "its resource id, `.../backupVaults/<name>`"),
            (
                "properties.storageUrl",
                "where the vault lives (`file:///...`)",
            ),
            (
                "properties.vaultId",
                "the vault's unique id, fixed at creation",
            ),
            ("properties.createdTime", "when it was created"),
            ("properties.formatVersion", "the vault format version"),
        ],
    },
    Shape {
        title: "Policy maps",
        from: "`policy_template`; as `properties` of `vault.policy`, `vault.policies`, \
`vault.create_policy`",
        about: "Azure's `BackupPolicy` as a map: one backup rule (the schedule and its tags) and \
retention rules (how long each tag is kept, and where). Edit it with `set_trigger`, \
`set_retention_rule` and `set_tag`, or as a map, then store it with `vault.create_policy`; \
names are accepted in any case and stored as Azure spells them. A stored policy is a resource \
(`id`, `name`, `type`) with the policy under `properties`.",
        fields: &[
            ("datasourceTypes", "the ARM types the policy protects"),
            (
                "policyRules[0].name",
                "a rule's name: the backup rule (`BackupWeekly`) or a retention rule (`Default`, `Monthly`, ...)",
            ),
            (
                "policyRules[0].objectType",
                "`AzureBackupRule` or `AzureRetentionRule`",
            ),
            (
                "policyRules[0].trigger.schedule.repeatingTimeIntervals",
                "the backup rule's schedule, ISO 8601 repeating intervals",
            ),
            (
                "policyRules[0].trigger.schedule.timeZone",
                "the time zone the schedule is in",
            ),
            (
                "policyRules[0].trigger.taggingCriteria",
                "which backups get which retention tag",
            ),
            (
                "policyRules[1].lifecycles",
                "a retention rule's lifecycles: data store, `deleteAfter.duration`, copies to the archive tier",
            ),
            (
                "policyRules[1].isDefault",
                "whether this is the Default retention rule",
            ),
        ],
    },
    Shape {
        title: "Backup instance maps",
        from: "`initialize_instance` (a request), `vault.protect`, `vault.instances`",
        about: "Azure's backup instance resource: which database is protected, by which policy, \
with which credentials. The credentials are a *reference* (`env:NAME`, `file:///path` or a Key \
Vault URI), resolved at each use and never stored or printed.",
        fields: &[
            (
                "name",
                "the instance name (`<server>-<database>-<uuid>`) that `adhoc_backup`, \
`recovery_points` and `jobs(#{ instance })` take",
            ),
            ("properties.friendlyName", "`<server>\\<database>`"),
            (
                "properties.dataSourceInfo.resourceID",
                "the database, `postgres://host:port/database`",
            ),
            (
                "properties.dataSourceInfo.resourceName",
                "the database name",
            ),
            (
                "properties.dataSourceSetInfo.resourceName",
                "the server name",
            ),
            (
                "properties.policyInfo.policyId",
                "the policy it is protected with",
            ),
            (
                "properties.datasourceAuthCredentials.secretStoreResource.uri",
                "where its credentials are",
            ),
            (
                "properties.currentProtectionState",
                "`ProtectionConfigured` once protected (`BackupSchedulesSuspended`, `ProtectionStopped` \
when backups are paused); absent on a request",
            ),
        ],
    },
    Shape {
        title: "Job maps",
        from: "`vault.adhoc_backup`, `vault.restore`, `vault.restore_as_files`, `jobs`, `job`",
        about: "Azure's job resource: every operation pgvault runs is recorded as one, whether a \
script, the CLI or the scheduler started it. A backup or restore binding returns its job once \
it has finished (with Azure's `jobId` at the top level too, as `adhoc-backup` prints it), and \
throws when it failed; `jobs()` shows failed ones with their error.",
        fields: &[
            ("name", "the job id (a UUID), what `job(id)` takes"),
            (
                "properties.status",
                "`InProgress`, `Completed`, `Failed` or `Cancelled`",
            ),
            (
                "properties.operation",
                "Azure's: `Backup` (on demand or scheduled, as `properties.isUserTriggered` \
says), `Restore`, `ConfigureBackup`, `Tiering`, `Management`",
            ),
            (
                "properties.pgvaultOperation",
                "pgvault's own: `OnDemandBackup`, `ScheduledBackup`, `Restore`, `RestoreDrill`, \
`ConfigureBackup`, `RetentionSweep`, ...",
            ),
            ("properties.vaultName", "the vault"),
            (
                "properties.backupInstanceFriendlyName",
                "the instance as `<server>\\<database>`",
            ),
            (
                "properties.backupInstanceId",
                "the instance's resource id; its last segment is the instance name",
            ),
            (
                "properties.startTime",
                "when it started (UTC, Azure's format)",
            ),
            (
                "properties.duration",
                "how long it ran, as a .NET TimeSpan (`00:02:11.9724387`)",
            ),
            (
                "properties.errorDetails[0].code",
                "why a failed job failed: an Azure code such as `UserErrorMissingDBPermissions` \
(the key is absent unless the job failed)",
            ),
            (
                "properties.errorDetails[0].message",
                "what was wrong and what to do",
            ),
            (
                "properties.extendedInfo.additionalDetails",
                "details by name: `RecoveryPointId` of a backup, `BytesRead`, `BytesStored`, \
`RetentionTag`, ...",
            ),
        ],
    },
    Shape {
        title: "Recovery point maps",
        from: "`vault.recovery_points`",
        about: "Azure's recovery point resource: one backup, restorable with `vault.restore` or \
`vault.restore_as_files` by its `name`.",
        fields: &[
            ("name", "the recovery point id that `restore` takes"),
            ("properties.recoveryPointTime", "when the backup was taken"),
            (
                "properties.retentionTagName",
                "the retention tag the policy gave it (`Default`, `Monthly`, ...)",
            ),
            (
                "properties.expiryTime",
                "when it leaves the vault tier, as the policy says",
            ),
            ("properties.policyName", "the policy it was taken under"),
            (
                "properties.recoveryPointDataStoresDetails[0].metaData",
                "JSON text: server version, database, size, pg_dump version",
            ),
        ],
    },
];

/// The page's opening: how scripts run and what their values and errors are. The function
/// sections and the shapes follow it.
const INTRO: &str = r#"# Scripting pgvault in Rhai

<!-- Generated by `crates/host/src/script/docs.rs` from the table in `help.rs`; do not edit.
     After changing either, regenerate with:
     PGVAULT_UPDATE_SNAPSHOTS=1 cargo test -p pgvault-host --lib script::docs -->

pgvault's operations are scriptable in [Rhai](https://rhai.rs/book/), in the manner of Azure
Backup's PowerShell cmdlets: `policy_template(..)` is `Get-AzDataProtectionPolicyTemplate`,
`vault.protect(..)` is `New-AzDataProtectionBackupInstance`, `vault.adhoc_backup(..)` is
`Backup-AzDataProtectionBackupInstanceAdhoc`. Every operation a script runs is recorded in the
job history exactly as when the CLI runs it.

## Running a script

- `pgvault run FILE` runs a script to its end. It exits 0 when the script finishes and 1 when
  it fails, printing the error as `FILE:LINE:COLUMN: message`.
- `pgvault repl` runs the same API line by line: state persists between lines, Tab completes
  function, vault, instance and policy names, and Ctrl-C cancels the running operation (no
  recovery point is made) without leaving the REPL.
- A drop-in scripts folder, watched by pgvault's automation host, runs each script placed
  there once, in the sandbox below. Scripts written for it (`scripts/protect-unprotected.rhai`)
  take their settings from the lines at their top and from the environment (`env("NAME")`).
  `pgvault run --sandbox FILE` runs a script as a drop-in would.

## The sandbox

A drop-in script (and `pgvault run --sandbox`) can do only what the host's flags allow, and
its header can only narrow that:

| Host flag (`serve`, `tick`, `run --sandbox`) | Header line | Allows |
|---|---|---|
| `--allow-destructive-scripts` | `// destructive: no` | deleting recovery points and instances, a retention sweep with `at` (not a dry run), suspending, stopping and resuming a stopped instance |
| `--script-restore-dir DIR` (repeatable; a folder or a Blob container URL) | `// restore-dir: DIR` | `restore_as_files` into DIR or under it |
| `--script-restore-server HOST[:PORT]` (repeatable) | `// restore-server: HOST[:PORT]` | `restore` onto that server |
| `--script-env NAME` (repeatable; `NAME*` for a prefix) | `// env: NAME` | `env("NAME")` |

Nothing is allowed by default, and a sandboxed script never creates a vault. It sends a secret
only to a server a backup instance already logs in to with it (`protect`, `server_databases`),
so a dropped file cannot hand the credentials of a database to a server of its choosing; protect
one database of a new server by hand first. A header line
naming more than the host allows fails the script before it runs, its job `Failed` with the
line named. A refused call is a script error (`UserErrorDestructiveOperationNotAllowed` or
`UserErrorScriptNotAllowed`) that says which flag would allow it. A sandboxed script also has
no `import` and no `eval`, and limits: 50 million operations, 64 nested calls, strings of
1 MiB, arrays and maps of 100,000 items and an hour of wall time. A script over a limit fails
with `ScriptLimitExceeded` and the limit in its message. `pgvault run` without `--sandbox` has
no limit on operations or time, but strings of 64 MiB, arrays of 4 million and maps of a million
items, so that no script can exhaust the process's memory.

Secret values (those of environment variables whose names say they hold a secret, such as
`PGVAULT_RESTORE_SECRET` or `PGPASSWORD`, and those behind the `env:` and `file:` references a
script passes) print as `<redacted>` in every script's output and error, so they reach neither
the job history nor a log.

Worked examples are in `scripts/`:
`walkthrough.rhai` and `powershell-walkthrough.rhai` (Azure's walkthroughs line by line),
`nightly-runbook.rhai` (an on-demand backup of every instance, failing if one fails),
`protect-unprotected.rhai` (protect and back up every new database of a server) and
`failed-jobs-report.rhai` (the last week's failures per instance).

`help()` lists these functions inside a script or the REPL, and `help("name")` shows one. Rhai's
own functions (`len`, `map`, `filter`, `keys`, string interpolation with backticks, `try` /
`catch`, `throw`) are described in the [Rhai book](https://rhai.rs/book/).

## Values

Values are Azure's JSON as Rhai maps and arrays, so what a script reads is what
`az dataprotection` and the pgvault CLI print:
`vault("TestBkpVault").policy("OssPolicy").properties.policyRules[0].name`. A map passed in
(a policy, an instance request) is read the same way, in Azure's property names. `to_json(value)`
prints any value as the CLI would. The [types](#types) section lists the fields scripts use most.

## Errors

A failed operation is a script error whose text starts with Azure's error code:
`UserErrorVaultNotFound: no vault named ...`, `UserErrorMissingDBPermissions: ...`. A backup or
restore that runs but fails is also an error (`job <id> failed: <code>: <message>`), so a
runbook never carries on after a backup that did not happen. To carry on anyway, catch it:

```rhai
try {
    vault("TestBkpVault").adhoc_backup(instance, "Default");
} catch (e) {
    print(`backup failed: ${e}`);
}
```

A script ends with an error of its own with `throw "message"`; `pgvault run` then exits with 1.
"#;

/// A heading's anchor as GitHub makes it: lowercase, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn by_group() -> BTreeMap<Group, Vec<&'static Doc>> {
    let mut groups: BTreeMap<Group, Vec<&'static Doc>> = BTreeMap::new();
    for d in DOCS {
        groups.entry(d.group).or_default().push(d);
    }
    groups
}

/// The whole of `docs/scripting.md`.
pub fn scripting_markdown() -> String {
    let groups = by_group();
    let mut out = String::from(INTRO);

    out.push_str("\n## Contents\n\n");
    for (group, docs) in &groups {
        let links: Vec<String> = docs
            .iter()
            .map(|d| format!("[`{}`](#{})", d.name, anchor(d.name)))
            .collect();
        let _ = writeln!(
            out,
            "- [{}](#{}): {}",
            group.title(),
            anchor(group.title()),
            links.join(", ")
        );
    }
    let _ = writeln!(out, "- [Types](#types): {}", {
        let links: Vec<String> = SHAPES
            .iter()
            .map(|s| format!("[{}](#{})", s.title, anchor(s.title)))
            .collect();
        links.join(", ")
    });

    for (group, docs) in &groups {
        let _ = write!(out, "\n## {}\n", group.title());
        for d in docs {
            let _ = write!(out, "\n### `{}`\n\n```rhai\n", d.name);
            for usage in d.usage {
                let _ = writeln!(out, "{usage}");
            }
            let _ = write!(out, "```\n\n{}\n\n", d.description);
            let _ = write!(out, "```rhai\n{}\n```\n", d.example);
        }
    }

    out.push_str("\n## Types\n");
    for shape in SHAPES {
        let _ = write!(
            out,
            "\n### {}\n\nFrom {}.\n\n{}\n\n| field | meaning |\n|---|---|\n",
            shape.title, shape.from, shape.about
        );
        for (path, meaning) in shape.fields {
            let _ = writeln!(out, "| `{path}` | {meaning} |");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rhai::{Dynamic, Engine};
    use serde_json::Value;

    use super::*;
    use crate::script::{ScriptContext, new_engine};
    use crate::service::Pgvault;

    /// `docs/scripting.md` is generated: any change to the API's help table shows in it, and a
    /// hand edit is caught. Regenerate with `PGVAULT_UPDATE_SNAPSHOTS=1`.
    #[test]
    fn scripting_md_matches_the_rendered_docs() {
        let actual = scripting_markdown();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scripting.md");
        if std::env::var_os("PGVAULT_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/scripting.md is not what help.rs and docs.rs render; regenerate it with \
             PGVAULT_UPDATE_SNAPSHOTS=1 cargo test -p pgvault-host --lib script::docs"
        );
    }

    #[test]
    fn every_function_and_group_is_on_the_page_with_working_links() {
        let page = scripting_markdown();
        for d in DOCS {
            assert!(
                page.contains(&format!("\n### `{}`\n", d.name)),
                "{}",
                d.name
            );
            assert!(page.contains(d.example), "{}'s example", d.name);
        }
        // Every heading has an anchor of its own (GitHub would number a repeated one, and
        // links to it would land on the first), and every in-page link points at one.
        let anchors: Vec<String> = page
            .lines()
            .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
            .map(anchor)
            .collect();
        let unique: std::collections::BTreeSet<&String> = anchors.iter().collect();
        assert_eq!(
            unique.len(),
            anchors.len(),
            "repeated anchors in {anchors:?}"
        );
        for link in page.split("](#").skip(1) {
            let target = link.split(')').next().unwrap();
            assert!(
                anchors.iter().any(|a| a == target),
                "a link to #{target}, which no heading makes"
            );
        }
        assert_eq!(
            anchor("Policies (maps until vault.create_policy stores them)"),
            "policies-maps-until-vaultcreate_policy-stores-them"
        );
    }

    fn engine() -> (Engine, tempfile::TempDir, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pgvault = Pgvault::open(pgvault_core::engine::home::Home::at(dir.path())).unwrap();
        let ctx = ScriptContext::operator(Arc::new(pgvault), runtime.handle().clone());
        (new_engine(ctx), dir, runtime)
    }

    /// The value at `path` (`properties.errorDetails[0].code`) in `value`, if there is one.
    fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
        let mut v = value;
        for part in path.split('.') {
            let (key, index) = match part.split_once('[') {
                Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            v = v.get(key)?;
            if let Some(i) = index {
                v = v.get(i)?;
            }
        }
        Some(v)
    }

    /// Every field the Types section names is where it says, in values the engine returns:
    /// a vault, a policy, an instance request and a failed job (a protect that cannot
    /// connect). Recovery points need a backup, which the end-to-end scripts tests make.
    #[test]
    fn the_documented_fields_exist_in_real_values() {
        let (engine, _home, rt) = engine();
        // Outside the home: a vault is refused in the home's own bookkeeping.
        let vault_dir = tempfile::tempdir().unwrap();
        let vault_url = format!("file://{}", vault_dir.path().join("v").display());
        let script = format!(
            r#"
            let v = new_vault("V", #{{ storage_url: "{vault_url}" }});
            let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
            v.create_policy("P", p);
            let request = initialize_instance(#{{
                datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
                datasource_id: "postgres://127.0.0.1:1/db",
                policy_id: "P", secret_store_type: "Environment",
                secret_store_uri: "env:PGVAULT_DOCS_TEST_SURELY_UNSET",
            }});
            try {{ v.protect(request); }} catch {{ }}
            #{{ vault: parse_json(v.to_json()), policy: p, instance: request, job: jobs()[0] }}
            "#
        );
        let values = std::thread::scope(|s| {
            s.spawn(|| engine.eval::<Dynamic>(&script).unwrap())
                .join()
                .unwrap()
        });
        drop(rt);
        let values: Value = rhai::serde::from_dynamic(&values).unwrap();
        for (shape, key) in [
            ("The Vault handle", "vault"),
            ("Policy maps", "policy"),
            ("Backup instance maps", "instance"),
            ("Job maps", "job"),
        ] {
            let shape = SHAPES.iter().find(|s| s.title == shape).unwrap();
            for (path, _) in shape.fields {
                // A request is not yet protected, so it has no protection state.
                if *path == "properties.currentProtectionState" {
                    continue;
                }
                assert!(
                    at(&values[key], path).is_some(),
                    "{}.{path} is documented but not in {}",
                    shape.title,
                    values[key]
                );
            }
        }
        assert_eq!(
            at(&values["job"], "properties.errorDetails[0].code"),
            Some(&Value::from("UserErrorInvalidSecret")),
            "{}",
            values["job"]
        );
    }
}
