//! `help()` and `help("name")`: the script API described from inside a script or the REPL.
//!
//! [`DOCS`] holds one entry per function pgvault registers: how it is called (one line per
//! overload, the receiver first for methods), a one-line summary for `help()`, a
//! description and an example. The entries are written by hand because Rhai's metadata
//! knows only types (`adhoc_backup(_: &mut Vault, _: Dynamic, _: string)`), not what an
//! argument means; the tests tie the two together, so a function registered without an
//! entry, an overload without a usage line, or an entry for a function that is gone fails
//! the build's tests instead of drifting.

use std::collections::BTreeMap;

use rhai::Engine;

use super::{RhaiResult, fail};

/// Where a function is listed in `help()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Group {
    Vaults,
    Policies,
    Instances,
    Protection,
    Recovery,
    Jobs,
    Values,
}

impl Group {
    pub(super) fn title(self) -> &'static str {
        match self {
            Group::Vaults => "Vaults: create, find, list",
            Group::Policies => "Policies (maps until vault.create_policy stores them)",
            Group::Instances => "Backup instances: protect, back up, restore",
            Group::Protection => "Protection states and deleting backup data",
            Group::Recovery => "Retention, rehydration and verification",
            Group::Jobs => "Job history",
            Group::Values => "Values, environment and help",
        }
    }
}

/// One function of the API.
#[derive(Debug)]
pub(super) struct Doc {
    /// The registered name; a property getter (`get$name`) is documented as `name`.
    pub name: &'static str,
    pub group: Group,
    /// One line per overload: `vault.adhoc_backup(instance, rule_name)`, or `vault.name`
    /// for a property.
    pub usage: &'static [&'static str],
    pub summary: &'static str,
    pub description: &'static str,
    pub example: &'static str,
}

pub(super) const DOCS: &[Doc] = &[
    // ---- vaults ----
    Doc {
        name: "new_vault",
        group: Group::Vaults,
        usage: &["new_vault(name)", "new_vault(name, #{ storage_url })"],
        summary: "create a vault and register its name (backup-vault create)",
        description: "Creates a vault and registers its name in PGVAULT_HOME. `storage_url` is \
where it lives (`file:///path`); without it the vault goes under PGVAULT_HOME/vaults. \
The map may also give `resource_group`, the Azure resource group its ids are under \
(default `pgvault`; InvalidResourceGroup if ARM would refuse the name), and \
`encryption_key_uri`, which encrypts the vault as `backup-vault create --encryption-key-uri` \
does (`env:NAME`, `file:PATH` or an Azure Key Vault key URI; the key itself never reaches the \
script). Fails with UserErrorVaultAlreadyExists if the name is taken. Returns the vault. Refused to \
drop-in scripts (UserErrorScriptNotAllowed): a vault is created by the operator.",
        example: r#"let v = new_vault("TestBkpVault", #{ storage_url: "file:///srv/backups/TestBkpVault" });
v.name"#,
    },
    Doc {
        name: "vault",
        group: Group::Vaults,
        usage: &["vault(name)"],
        summary: "a registered vault by name (Get-AzDataProtectionBackupVault)",
        description: "Looks a vault up by name (case-insensitively) in the registry. Every \
method called on it reads the vault afresh, so a script sees the vault as it is. `print(v)` \
and `${v}` show its name, an array of vaults prints as `[vault(\"A\"), vault(\"B\")]`, and \
`v.to_json()` gives its resource JSON, which the REPL shows.",
        example: r#"let v = vault("TestBkpVault");
v.instances().map(|i| i.name)"#,
    },
    Doc {
        name: "vaults",
        group: Group::Vaults,
        usage: &["vaults()"],
        summary: "every registered vault (backup-vault list)",
        description: "An array of every vault registered in PGVAULT_HOME, sorted by name, for \
runbooks that go over all of them.",
        example: r#"for v in vaults() {
    print(`${v.name}: ${v.instances().len()} instances`);
}"#,
    },
    Doc {
        name: "name",
        group: Group::Vaults,
        usage: &["vault.name"],
        summary: "the vault's name (a property)",
        description: "The vault's registered name, as written when it was created.",
        example: r#"vault("testbkpvault").name   // "TestBkpVault""#,
    },
    // ---- policies ----
    Doc {
        name: "policy_template",
        group: Group::Policies,
        usage: &["policy_template(datasource_type)"],
        summary: "the default policy for a datasource type (get-default-policy-template)",
        description: "Azure's default policy as a map to edit and then store with \
vault.create_policy: a weekly backup kept three months in the vault. `datasource_type` is \
AzureDatabaseForPostgreSQL or AzureDatabaseForPostgreSQLFlexibleServer.",
        example: r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
p.policyRules.map(|r| r.name)"#,
    },
    Doc {
        name: "schedule",
        group: Group::Policies,
        usage: &["schedule(interval_type, interval_count, days)"],
        summary: "a backup schedule for set_trigger (New-AzDataProtectionPolicyTriggerScheduleClientObject)",
        description: "ISO 8601 repeating intervals from an interval type (Weekly, Daily or \
Hourly), a count (1 for Weekly and Daily; 4, 6, 8 or 12 hours for Hourly) and the start times \
(the days of the week come from the dates given for Weekly).",
        example: r#"let s = schedule("Weekly", 1, ["2021-08-15T22:00:00", "2021-08-18T22:00:00"]);
s   // ["R/2021-08-15T22:00:00+00:00/P1W", "R/2021-08-18T22:00:00+00:00/P1W"]"#,
    },
    Doc {
        name: "set_trigger",
        group: Group::Policies,
        usage: &["policy.set_trigger(schedule)"],
        summary: "replace a policy's backup schedule (Edit-AzDataProtectionPolicyTriggerClientObject)",
        description: "Sets the schedule of the policy's backup rule, in place.",
        example: r#"let p = policy_template("AzureDatabaseForPostgreSQL");
p.set_trigger(schedule("Daily", 1, ["2025-01-01T02:00:00"]));
p.policyRules[0].trigger.schedule.repeatingTimeIntervals"#,
    },
    Doc {
        name: "lifecycle",
        group: Group::Policies,
        usage: &["lifecycle(#{ options })"],
        summary: "how long a data store keeps a backup (New-AzDataProtectionRetentionLifeCycleClientObject)",
        description: "Options: source_data_store (VaultStore or ArchiveStore), \
retention_duration_type (Days, Weeks, Months, Years), retention_duration_count, and to move \
backups on: target_data_store, copy_option (CopyOnExpiryOption, ImmediateCopyOption or \
CustomCopyOption) and copy_after_duration (ISO 8601, for CustomCopyOption).",
        example: r#"let to_archive = lifecycle(#{
    source_data_store: "VaultStore",
    retention_duration_type: "Months",
    retention_duration_count: 6,
    target_data_store: "ArchiveStore",
    copy_option: "CopyOnExpiryOption",
});"#,
    },
    Doc {
        name: "set_retention_rule",
        group: Group::Policies,
        usage: &["policy.set_retention_rule(name, lifecycles)"],
        summary: "add or replace a retention rule (Edit-AzDataProtectionPolicyRetentionRuleClientObject)",
        description: "Sets the retention rule `name` (Default, Daily, Weekly, Monthly or Yearly, \
as in Azure) of the policy, in place, to one lifecycle or an array of them. Only the rule \
named Default is the default rule.",
        example: r#"let p = policy_template("AzureDatabaseForPostgreSQL");
p.set_retention_rule("Monthly", [
    lifecycle(#{ source_data_store: "VaultStore", retention_duration_type: "Months",
                 retention_duration_count: 6, target_data_store: "ArchiveStore",
                 copy_option: "CopyOnExpiryOption" }),
    lifecycle(#{ source_data_store: "ArchiveStore", retention_duration_type: "Months",
                 retention_duration_count: 24 }),
]);"#,
    },
    Doc {
        name: "remove_retention_rule",
        group: Group::Policies,
        usage: &["policy.remove_retention_rule(name)"],
        summary: "remove a retention rule from a policy",
        description: "Removes the retention rule `name` from the policy, in place. The Default \
rule cannot be removed.",
        example: r#"p.remove_retention_rule("Monthly");"#,
    },
    Doc {
        name: "tag_criteria",
        group: Group::Policies,
        usage: &["tag_criteria(#{ options })"],
        summary: "which backups a tag applies to (New-AzDataProtectionPolicyTagCriteriaClientObject)",
        description: "Either absolute_criteria alone (FirstOfDay, FirstOfWeek, FirstOfMonth, \
FirstOfYear, AllBackup), or any of days_of_week, weeks_of_month, months_of_year and \
days_of_month (a string or an array).",
        example: r#"let monthly = tag_criteria(#{ absolute_criteria: "FirstOfMonth" });
let weekend = tag_criteria(#{ days_of_week: ["Saturday", "Sunday"] });"#,
    },
    Doc {
        name: "set_tag",
        group: Group::Policies,
        usage: &["policy.set_tag(name, criteria)"],
        summary: "tag backups for a retention rule (Edit-AzDataProtectionPolicyTagClientObject)",
        description: "Gives the retention rule `name` a tag with these criteria, in place: a \
scheduled backup that matches is kept as that rule says.",
        example: r#"p.set_tag("Monthly", tag_criteria(#{ absolute_criteria: "FirstOfMonth" }));"#,
    },
    Doc {
        name: "remove_tag",
        group: Group::Policies,
        usage: &["policy.remove_tag(name)"],
        summary: "remove a tag from a policy",
        description: "Removes the tag `name` from the policy's backup rule, in place.",
        example: r#"p.remove_tag("Monthly");"#,
    },
    Doc {
        name: "simulate",
        group: Group::Policies,
        usage: &["policy.simulate(from, to)", "policy.simulate(from, to, at)"],
        summary: "the backups a policy would take and keep (backup-policy simulate)",
        description: "Runs the policy's schedule from `from` to `to` (RFC 3339 times or dates) and \
judges every backup at `at` (default `to`): its tag, data store and expiry. Returns \
#{ recoveryPoints: [..], summary: #{ VaultStore, ArchiveStore, Deleted } }.",
        example: r#"let p = policy_template("AzureDatabaseForPostgreSQL");
p.simulate("2025-01-01", "2026-01-01").summary"#,
    },
    Doc {
        name: "create_policy",
        group: Group::Policies,
        usage: &["vault.create_policy(name, policy)"],
        summary: "validate a policy map and store it in the vault (backup-policy create)",
        description: "Validates the policy (every rule, schedule, lifecycle and tag) and stores \
it under `name`. A policy that exists is not replaced (UserErrorBMSUpdatePolicyNotSupported, \
as in Azure). Returns the stored policy resource, whose `id` is what initialize_instance takes \
as `policy_id`.",
        example: r#"let p = policy_template("AzureDatabaseForPostgreSQLFlexibleServer");
let created = vault("TestBkpVault").create_policy("OssPolicy", p);
created.id"#,
    },
    Doc {
        name: "policy",
        group: Group::Policies,
        usage: &["vault.policy(name)"],
        summary: "a stored policy resource (backup-policy show)",
        description: "The policy stored in the vault under `name`, as Azure's policy resource \
(`id`, `name`, `type`, `properties`).",
        example: r#"vault("TestBkpVault").policy("OssPolicy").properties.policyRules.map(|r| r.name)"#,
    },
    Doc {
        name: "policies",
        group: Group::Policies,
        usage: &["vault.policies()"],
        summary: "every policy stored in the vault (backup-policy list)",
        description: "An array of the vault's policy resources.",
        example: r#"vault("TestBkpVault").policies().map(|p| p.name)"#,
    },
    // ---- instances ----
    Doc {
        name: "server_databases",
        group: Group::Instances,
        usage: &["server_databases(#{ options })"],
        summary: "the databases a server offers for backup, to protect them all",
        description: "Options: datasource_type, datasource_id (postgres://host:port/database: \
any database the login may connect to, used only to reach the server), secret_store_type and \
secret_store_uri, as initialize_instance takes them. Connects with the secret's login and returns \
the names of the server's databases that accept connections, sorted, leaving out templates and \
the databases that are never backed up (azure_maintenance, azure_sys). Fails with the codes \
protect gives for the same mistakes (UserErrorDBUserAuthFailed, UserErrorDBNotFound, ...). A \
drop-in script may use a secret only with a server a backup instance already logs in to with it \
(UserErrorScriptNotAllowed otherwise).",
        example: r#"let names = server_databases(#{
    datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
    datasource_id: "postgres://db.example.com:5432/postgres",
    secret_store_type: "Environment",
    secret_store_uri: "env:DB_SERVER_CONNECTION",
});
names.filter(|n| n != "postgres")"#,
    },
    Doc {
        name: "initialize_instance",
        group: Group::Instances,
        usage: &["initialize_instance(#{ options })"],
        summary: "prepare a backup instance request for vault.protect (Initialize-AzDataProtectionBackupInstance)",
        description: "Options: datasource_type, datasource_id (postgres://host:port/database, no \
credentials), policy_id (a name or a policy id), secret_store_type (Environment, File or \
AzureKeyVault), secret_store_uri (env:NAME, file:///path or a Key Vault secret URI) and \
optionally location. Nothing is checked against the database until vault.protect.",
        example: r#"let request = initialize_instance(#{
    datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
    datasource_id: "postgres://db.example.com:5432/empdb11",
    policy_id: "OssPolicy",
    secret_store_type: "Environment",
    secret_store_uri: "env:EMPDB11_CONNECTION",
});
request.properties.friendlyName"#,
    },
    Doc {
        name: "protect",
        group: Group::Instances,
        usage: &["vault.protect(instance)"],
        summary: "validate access to a database and start protecting it (backup-instance create)",
        description: "Takes the request from initialize_instance, checks that its policy exists, \
resolves the secret reference, connects and checks the backup privileges, then stores the \
backup instance (New-AzDataProtectionBackupInstance). Returns the instance resource; its \
`name` is what adhoc_backup and recovery_points take. A drop-in script may use a secret only \
with a server a backup instance already logs in to with it (UserErrorScriptNotAllowed \
otherwise): the operator pairs a secret with a server by protecting one database by hand.",
        example: r#"let bi = vault("TestBkpVault").protect(initialize_instance(#{
    datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
    datasource_id: "postgres://db.example.com:5432/empdb11",
    policy_id: "OssPolicy",
    secret_store_type: "Environment",
    secret_store_uri: "env:EMPDB11_CONNECTION",
}));
bi.properties.currentProtectionState"#,
    },
    Doc {
        name: "instances",
        group: Group::Instances,
        usage: &["vault.instances()"],
        summary: "the vault's backup instances (backup-instance list)",
        description: "An array of backup instance resources, with their protection state and \
policy.",
        example: r#"vault("TestBkpVault").instances().map(|i| `${i.name}: ${i.properties.currentProtectionState}`)"#,
    },
    Doc {
        name: "adhoc_backup",
        group: Group::Instances,
        usage: &[
            "vault.adhoc_backup(instance, rule_name)",
            "vault.adhoc_backup(instance, rule_name, retention_tag_override)",
        ],
        summary: "back up an instance now (backup-instance adhoc-backup)",
        description: "Runs an on-demand backup of `instance` (its name or its resource) as an \
OnDemandBackup job, kept as the policy's retention rule `rule_name` says (\"Default\", or a \
rule such as \"Monthly\"), optionally under another tag. Returns the finished job; a failed \
backup is a script error, so a runbook never carries on after a backup that did not happen. \
In the REPL the job's progress shows every few seconds and Ctrl-C cancels it (no recovery \
point is made).",
        example: r#"let job = vault("TestBkpVault").adhoc_backup("db-empdb11", "Default");
job.properties.status   // "Completed""#,
    },
    Doc {
        name: "recovery_points",
        group: Group::Instances,
        usage: &["vault.recovery_points(instance_name)"],
        summary: "an instance's recovery points, newest first (recovery-point list)",
        description: "An array of recovery point resources: `name` is the recovery point id that \
restore takes, `properties.recoveryPointTime` when it was taken, and the retention tag and \
expiry the policy gave it.",
        example: r#"let rps = vault("TestBkpVault").recovery_points("db-empdb11");
rps.map(|rp| `${rp.name} ${rp.properties.recoveryPointTime}`)"#,
    },
    Doc {
        name: "restore",
        group: Group::Instances,
        usage: &["vault.restore(instance, #{ options })"],
        summary: "restore a recovery point into a new database (backup-instance restore trigger)",
        description: "Options: recovery_point_id (a recovery point's `name`), \
target_database_url (postgres://host:port/new_database, which must not exist), \
secret_store_uri for the target's credentials and optionally secret_store_type. Returns the \
finished Restore job; a failed restore is a script error. A drop-in script may restore only \
onto a server the host allows with --script-restore-server HOST[:PORT] (refused otherwise \
with UserErrorScriptNotAllowed).",
        example: r#"let v = vault("TestBkpVault");
let rp = v.recovery_points("db-empdb11")[0];
v.restore("db-empdb11", #{
    recovery_point_id: rp.name,
    target_database_url: "postgres://db.example.com:5432/empdb11_restored",
    secret_store_uri: "env:EMPDB11_CONNECTION",
});"#,
    },
    Doc {
        name: "restore_as_files",
        group: Group::Instances,
        usage: &["vault.restore_as_files(instance, #{ options })"],
        summary: "restore a recovery point as a pg_restore-ready dump file",
        description: "Options: recovery_point_id, one target (target_blob_container_url, \
a Blob container as `https://<account>.blob.core.windows.net/<container>` with credentials from \
the environment, or target_directory, a folder) and optionally file_name. Writes the \
custom-format dump `<file_name>.dump`, whole or not at all (a folder's file under a temporary \
name renamed when complete, a blob committed when complete); an existing one is refused. \
Returns the finished Restore job. A drop-in script may write only into a folder or container \
the host allows with --script-restore-dir (or under it), with a plain file_name (refused \
otherwise with UserErrorScriptNotAllowed).",
        example: r#"let v = vault("TestBkpVault");
v.restore_as_files("db-empdb11", #{
    recovery_point_id: v.recovery_points("db-empdb11")[0].name,
    target_blob_container_url: "https://mystorage.blob.core.windows.net/restores",
    file_name: "empdb11",
});
// or into a folder: target_directory: "/srv/restores""#,
    },
    // ---- protection states and deletion ----
    Doc {
        name: "suspend_backups",
        group: Group::Protection,
        usage: &["vault.suspend_backups(instance)"],
        summary: "stop backups of an instance, keeping its recovery points (backup-instance suspend-backup)",
        description: "Sets the instance's protection state to BackupSchedulesSuspended: no scheduled or \
on-demand backup runs, and the recovery points it has are kept and still expire as the \
policy says. `instance` is its name or its resource. Returns the instance resource. \
Destructive (it ends the backups that protect the database): refused to drop-in scripts with \
UserErrorDestructiveOperationNotAllowed unless the host was started with \
--allow-destructive-scripts.",
        example: r#"vault("TestBkpVault").suspend_backups("db-empdb11").properties.currentProtectionState"#,
    },
    Doc {
        name: "stop_protection",
        group: Group::Protection,
        usage: &["vault.stop_protection(instance)"],
        summary: "stop protecting an instance and retain its data (backup-instance stop-protection)",
        description: "Sets the instance's protection state to ProtectionStopped: no backups run \
and the recovery points it has are kept (the retention sweep leaves them alone). \
vault.resume_protection undoes it. Returns the instance resource. Destructive, as \
suspend_backups: refused to drop-in scripts unless the host allows destructive scripts.",
        example: r#"vault("TestBkpVault").stop_protection("db-empdb11")"#,
    },
    Doc {
        name: "resume_protection",
        group: Group::Protection,
        usage: &["vault.resume_protection(instance)"],
        summary: "resume backups of a suspended or stopped instance (backup-instance resume-protection)",
        description: "Sets the instance's protection state back to ProtectionConfigured: backups \
run again as its policy schedules them. Returns the instance resource. Resuming a stopped \
instance lets its recovery points (kept forever while stopped) expire again, so a drop-in \
script may do it only when the host allows destructive scripts; resuming a suspended one is \
always allowed.",
        example: r#"vault("TestBkpVault").resume_protection("db-empdb11")"#,
    },
    Doc {
        name: "delete_recovery_point",
        group: Group::Protection,
        usage: &["vault.delete_recovery_point(instance, recovery_point_id)"],
        summary: "delete one recovery point from every tier (destructive)",
        description: "Deletes the recovery point (a recovery point's `name`) from the vault and \
archive tiers as a DeleteRecoveryPoint job; its space returns at the next garbage collection. \
Returns the finished job; a failed deletion is a script error. Destructive: refused to \
drop-in scripts with UserErrorDestructiveOperationNotAllowed unless the host was started \
with --allow-destructive-scripts (`pgvault run` and the REPL may always call it).",
        example: r#"let v = vault("TestBkpVault");
let oldest = v.recovery_points("db-empdb11")[-1];
v.delete_recovery_point("db-empdb11", oldest.name)"#,
    },
    Doc {
        name: "delete_backup_instance",
        group: Group::Protection,
        usage: &["vault.delete_backup_instance(instance)"],
        summary: "stop protection and delete the instance's data (backup-instance delete; destructive)",
        description: "Azure's \"stop protection and delete data\": deletes every recovery point of \
the instance (one DeleteRecoveryPoint job each), then the instance itself. Returns the \
deletion jobs. Destructive: refused to drop-in scripts with \
UserErrorDestructiveOperationNotAllowed unless the host was started with \
--allow-destructive-scripts.",
        example: r#"let jobs = vault("TestBkpVault").delete_backup_instance("db-empdb11");
print(`${jobs.len()} recovery points deleted`);"#,
    },
    // ---- retention and recovery ----
    Doc {
        name: "retention_sweep",
        group: Group::Recovery,
        usage: &[
            "vault.retention_sweep()",
            "vault.retention_sweep(#{ at, dry_run })",
        ],
        summary: "apply the policies' retention now (retention sweep)",
        description: "Moves recovery points to the archive tier and deletes expired ones exactly \
as `backup-policy simulate` shows, each move or deletion a job under one RetentionSweep job, \
then collects garbage. `at` judges retention as of another time (2030-01-01 or an RFC 3339 \
time); `dry_run: true` only plans. Returns the plan (`plan.actions`, `plan.warnings`), the \
garbage collection's report and, unless a dry run, the jobs. The last recovery point of an \
instance is never deleted. A sweep with `at` (not a dry run) deletes what a sweep now keeps: \
drop-in scripts may only plan one, unless the host allows destructive scripts.",
        example: r#"let sweep = vault("TestBkpVault").retention_sweep(#{ dry_run: true });
for a in sweep.plan.actions { print(`${a.action} ${a.recoveryPointId}: ${a.reason}`); }"#,
    },
    Doc {
        name: "rehydrate",
        group: Group::Recovery,
        usage: &["vault.rehydrate(instance, recovery_point_id, days)"],
        summary: "copy an archive-tier recovery point back for 10 to 30 days (recovery-point rehydrate)",
        description: "Copies a recovery point that lives only in the archive tier back to the \
vault tier for `days` (10 to 30) as a Rehydrate job, after which it restores with \
`source_datastore: \"ArchiveStore\"`; the sweep removes the copy when the time is up. Returns \
the job; a failed rehydration is a script error. Rehydrating again sets the copy's end anew: \
a drop-in script may not end a copy sooner than it ends now unless the host allows \
destructive scripts.",
        example: r#"let v = vault("TestBkpVault");
v.rehydrate("db-empdb11", "7a0c1d5e9f3b4e2a8c6d0b1a2f3e4d5c", 15)"#,
    },
    Doc {
        name: "verify",
        group: Group::Recovery,
        usage: &[
            "vault.verify(instance)",
            "vault.verify(instance, recovery_point_id)",
        ],
        summary: "read recovery points back and check every chunk (recovery-point verify)",
        description: "Reads every recovery point of the instance (or one), in every tier that \
holds it, as a restore would: each chunk against its hash, the stream against its manifest, \
the dump's table of contents. Returns one result per point, `status` OK or Damaged, with the \
missing and corrupt chunks of each tier's copy named. Writes nothing.",
        example: r#"let damaged = vault("TestBkpVault").verify("db-empdb11").filter(|r| r.status != "OK");
if damaged.len() > 0 { throw `${damaged.len()} damaged recovery points`; }"#,
    },
    // ---- jobs ----
    Doc {
        name: "jobs",
        group: Group::Jobs,
        usage: &[
            "jobs()",
            "jobs(#{ vault, instance, status, operation, since, before, limit })",
        ],
        summary: "the job history, newest first (job list)",
        description: "Every recorded job, or those matching all the filters given: vault, \
instance, status (InProgress, Completed, Failed, Cancelled), operation (pgvault's, as \
properties.pgvaultOperation shows it: OnDemandBackup, ScheduledBackup, Restore, \
ConfigureBackup, ...; or Azure's, as properties.operation shows it: Backup, Restore, Tiering, \
Management), since (started at or after) and before (started before), each a time such as \
2025-01-01 or 2025-01-01T02:00:00Z or a duration back from now such as P7D or PT12H, and \
limit (at most this many). Each is Azure's job resource.",
        example: r#"let failed = jobs(#{ status: "Failed", since: "P7D" });
failed.map(|j| `${j.name}: ${j.properties.errorDetails[0].code}`)"#,
    },
    Doc {
        name: "job",
        group: Group::Jobs,
        usage: &["job(id)"],
        summary: "one job by id (job show)",
        description: "The job with this id (a UUID, as jobs() and the job list show).",
        example: r#"let latest = jobs()[0];
job(latest.name).properties.status"#,
    },
    // ---- values ----
    Doc {
        name: "to_json",
        group: Group::Values,
        usage: &["to_json(value)", "vault.to_json()"],
        summary: "a value (or a vault's Azure resource) as pretty JSON text",
        description: "Any map, array or plain value as indented JSON text, the way the CLI \
prints it; on a vault, the vault's Azure resource. The text is held to the script's string \
size limit.",
        example: r#"print(to_json(policy_template("AzureDatabaseForPostgreSQL").policyRules[0].trigger));
print(vault("TestBkpVault").to_json());"#,
    },
    Doc {
        name: "env",
        group: Group::Values,
        usage: &["env(name)"],
        summary: "an environment variable, or () when it is unset",
        description: "The value of the environment variable `name` as a string, or () so that \
`??` can give a default. A drop-in script may read only the variables the host lists with \
--script-env NAME (or NAME*), because the environment holds database secrets; any other is \
an error (UserErrorScriptNotAllowed). Secret values a script prints anyway show as \
<redacted>.",
        example: r#"let vault_name = env("PGVAULT_VAULT_NAME") ?? "TestBkpVault";"#,
    },
    Doc {
        name: "help",
        group: Group::Values,
        usage: &["help()", "help(name)"],
        summary: "this list, or one function with its example",
        description: "help() lists pgvault's functions; help(\"name\") shows how one is called, \
what it does and an example. Rhai's own functions (len, map, filter, ...) are in the Rhai \
book, https://rhai.rs/book/.",
        example: r#"help("adhoc_backup")"#,
    },
];

/// Registers `help()` and `help(name)`. Call it after every other registration: it reads the
/// engine's metadata for the types of the functions registered so far.
pub(super) fn register(engine: &mut Engine) {
    let types = registered_types(engine);
    let listing = listing();
    engine.register_fn("help", move || listing.clone());
    engine.register_fn("help", move |name: &str| -> RhaiResult<String> {
        describe(name, &types)
    });
}

/// Function name to its signatures as Rhai reports them, made readable
/// (`adhoc_backup(Vault, Dynamic, string) -> Dynamic`): the pgvault functions, then Rhai's
/// standard library for `help("len")`.
fn registered_types(engine: &Engine) -> BTreeMap<String, Vec<String>> {
    let mut types: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sig in engine.gen_fn_signatures(true) {
        let Some((name, _)) = sig.split_once('(') else {
            continue;
        };
        let name = name.trim_start_matches("get$").to_string();
        types.entry(name).or_default().push(readable(&sig));
    }
    for sigs in types.values_mut() {
        sigs.sort();
        sigs.dedup();
    }
    types
}

/// `adhoc_backup(_: &mut pgvault_host::script::vault::VaultRef, _: Dynamic) -> Result<..>`
/// as `adhoc_backup(Vault, Dynamic) -> Dynamic`.
fn readable(sig: &str) -> String {
    let mut s = sig
        .replace(
            "alloc::boxed::Box<rhai::types::error::EvalAltResult>",
            "Error",
        )
        .replace("rhai::types::dynamic::Dynamic", "Dynamic")
        .replace("types::dynamic::Dynamic", "Dynamic")
        .replace("alloc::vec::Vec<Dynamic>", "array")
        .replace("alloc::string::String", "string")
        .replace("pgvault_host::script::vault::VaultRef", "Vault")
        .replace("_: ", "")
        .replace("&mut ", "")
        .replace("get$", "");
    if let Some(i) = s.find("core::result::Result<")
        && let Some(inner) = s[i + "core::result::Result<".len()..].strip_suffix(",Error>")
    {
        s = format!("{}{inner}", &s[..i]);
    }
    s
}

fn find(name: &str) -> Option<&'static Doc> {
    // `help("vault.adhoc_backup")` works as well as `help("adhoc_backup")`.
    let name = name.trim().rsplit('.').next().unwrap_or_default();
    DOCS.iter().find(|d| d.name == name)
}

/// `help()`: the functions by group, each with its summary.
fn listing() -> String {
    let call = |d: &Doc| d.usage[0].split('(').next().unwrap_or(d.name).to_string();
    let width = DOCS.iter().map(|d| call(d).len()).max().unwrap_or(0);
    let mut groups: BTreeMap<Group, Vec<&Doc>> = BTreeMap::new();
    for d in DOCS {
        groups.entry(d.group).or_default().push(d);
    }
    let mut out = String::from(
        "pgvault's script API, the same in `pgvault run` and `pgvault repl`. \
help(\"name\") shows one function with an example.\n",
    );
    for (group, docs) in groups {
        out.push_str(&format!("\n{}\n", group.title()));
        for d in docs {
            out.push_str(&format!("  {:width$}  {}\n", call(d), d.summary));
        }
    }
    out.push_str(
        "\nValues are Azure's JSON as maps: vault(\"V\").policy(\"P\").properties.policyRules[0].name\n\
Rhai's own functions (len, map, filter, keys, ...): https://rhai.rs/book/",
    );
    out
}

/// `help(name)`: usage, description, example and Rhai's view of the types.
fn describe(name: &str, types: &BTreeMap<String, Vec<String>>) -> RhaiResult<String> {
    let Some(doc) = find(name) else {
        if let Some(sigs) = types.get(name.trim()) {
            return Ok(format!(
                "`{name}` is part of Rhai's standard library (https://rhai.rs/book/):\n  {}",
                sigs.join("\n  ")
            ));
        }
        let close: Vec<&str> = DOCS
            .iter()
            .map(|d| d.name)
            .filter(|n| n.contains(name.trim()) || name.contains(n))
            .collect();
        return Err(fail(if close.is_empty() {
            format!("no function `{name}`; help() lists them all")
        } else {
            format!(
                "no function `{name}`; did you mean {}? help() lists them all",
                close.join(", ")
            )
        }));
    };
    let mut out = String::new();
    for usage in doc.usage {
        out.push_str(&format!("{usage}\n"));
    }
    out.push_str(&format!("\n{}\n\nExample:\n", wrap(doc.description, 92)));
    for line in doc.example.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    if let Some(sigs) = types.get(doc.name) {
        out.push_str(&format!("\nTypes:\n  {}", sigs.join("\n  ")));
    }
    Ok(out.trim_end().to_string())
}

/// Words filled into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::script::{ScriptContext, new_engine};
    use crate::service::Pgvault;

    fn engine() -> (Engine, tempfile::TempDir, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pgvault = Pgvault::open(pgvault_core::engine::home::Home::at(dir.path())).unwrap();
        let ctx = ScriptContext::operator(Arc::new(pgvault), runtime.handle().clone());
        (new_engine(ctx), dir, runtime)
    }

    /// (name, number of parameters) of every function pgvault registers, from the engine's
    /// own metadata; a property getter `get$name` counts as `name`.
    fn registered(engine: &Engine) -> BTreeSet<(String, usize)> {
        let json: serde_json::Value =
            serde_json::from_str(&engine.gen_fn_metadata_to_json(false).unwrap()).unwrap();
        json["functions"]
            .as_array()
            .unwrap()
            .iter()
            // Rhai's display hooks, which `print` and `${..}` call: Rhai's functions for
            // pgvault's types, described by the types' own entries.
            .filter(|f| !matches!(f["name"].as_str(), Some("to_string" | "to_debug")))
            .map(|f| {
                let name = f["name"].as_str().unwrap().trim_start_matches("get$");
                (name.to_string(), f["numParams"].as_u64().unwrap() as usize)
            })
            .collect()
    }

    /// (name, number of parameters) a usage line describes: `vault.f(a, b)` takes three,
    /// the receiver included; `vault.name` is a getter of one.
    fn usage_arity(usage: &str) -> (String, usize) {
        let (head, args) = match usage.split_once('(') {
            Some((head, rest)) => (head, rest.trim_end_matches(')')),
            None => (usage, ""),
        };
        let (receiver, name) = match head.split_once('.') {
            Some((_, name)) => (1, name),
            None => (0, head),
        };
        let args = if args.trim().is_empty() {
            0
        } else if args.trim_start().starts_with("#{") {
            1 // one map of options
        } else {
            args.split(',').count()
        };
        let arity = if usage.contains('(') {
            receiver + args
        } else {
            1 // a property: its getter takes the receiver
        };
        (name.to_string(), arity)
    }

    #[test]
    fn every_registered_function_has_help_and_every_help_entry_is_registered() {
        let (engine, _dir, _rt) = engine();
        let registered = registered(&engine);
        let documented: BTreeSet<(String, usize)> = DOCS
            .iter()
            .flat_map(|d| d.usage.iter().map(|u| usage_arity(u)))
            .collect();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "registered without a help entry or usage line in help.rs (name, parameters): {undocumented:?}"
        );
        let stale: Vec<_> = documented.difference(&registered).collect();
        assert!(
            stale.is_empty(),
            "help.rs documents what is not registered (name, parameters): {stale:?}"
        );
        for d in DOCS {
            assert!(
                d.usage.iter().all(|u| usage_arity(u).0 == d.name),
                "{}: every usage line calls {}",
                d.name,
                d.name
            );
        }
        let names: BTreeSet<&str> = DOCS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), DOCS.len(), "one entry per function");
    }

    #[test]
    fn every_example_parses() {
        let (engine, _dir, _rt) = engine();
        for d in DOCS {
            assert!(
                !d.summary.is_empty() && !d.description.is_empty(),
                "{}",
                d.name
            );
            if let Err(e) = engine.compile(d.example) {
                panic!(
                    "the example of {} does not parse: {e}\n{}",
                    d.name, d.example
                );
            }
        }
    }

    #[test]
    fn help_lists_the_api_and_describes_one_function() {
        let (engine, _dir, _rt) = engine();
        let all = engine.eval::<String>("help()").unwrap();
        for d in DOCS {
            assert!(all.contains(d.summary), "help() misses {}", d.name);
        }
        assert!(all.contains("vault.adhoc_backup"), "{all}");

        let one = engine.eval::<String>(r#"help("adhoc_backup")"#).unwrap();
        assert!(
            one.starts_with("vault.adhoc_backup(instance, rule_name)\n"),
            "{one}"
        );
        assert!(
            one.contains(r#"adhoc_backup("db-empdb11", "Default")"#),
            "{one}"
        );
        assert!(
            one.contains("adhoc_backup(Vault, Dynamic, string) -> Dynamic"),
            "{one}"
        );
        assert_eq!(
            engine
                .eval::<String>(r#"help("vault.adhoc_backup")"#)
                .unwrap(),
            one
        );

        let std_fn = engine.eval::<String>(r#"help("len")"#).unwrap();
        assert!(std_fn.contains("Rhai's standard library"), "{std_fn}");

        let err = engine.eval::<String>(r#"help("backup")"#).unwrap_err();
        assert!(
            err.to_string().contains("did you mean adhoc_backup"),
            "{err}"
        );
    }
}
