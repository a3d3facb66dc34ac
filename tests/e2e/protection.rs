//! An instance's `protectionStatus` follows `suspend-backup`, `stop-protection` and
//! `resume-protection`, with `currentProtectionState`, to the values Azure's enums have.

use crate::support::{World, sample_database};

#[test]
fn protection_status_follows_suspend_stop_and_resume() {
    let w = World::new();
    let db = sample_database("prot", 100);
    w.vault_with_policy("ProtVault");
    let instance = w.protect("ProtVault", &db, &w.admin_secret(&db));
    let state = |command: &str| {
        let v = w.json(&[
            "backup-instance",
            command,
            "--vault-name",
            "ProtVault",
            "--name",
            &instance,
        ]);
        // What `show` prints afterwards is what the command printed.
        let shown = w.json(&[
            "backup-instance",
            "show",
            "--vault-name",
            "ProtVault",
            "--name",
            &instance,
        ]);
        assert_eq!(v, shown, "{command}");
        (
            v["properties"]["currentProtectionState"].clone(),
            v["properties"]["protectionStatus"]["status"].clone(),
        )
    };
    let cases = [
        (
            "suspend-backup",
            "BackupSchedulesSuspended",
            "ProtectionStopped",
        ),
        (
            "resume-protection",
            "ProtectionConfigured",
            "ProtectionConfigured",
        ),
        ("stop-protection", "ProtectionStopped", "ProtectionStopped"),
        (
            "resume-protection",
            "ProtectionConfigured",
            "ProtectionConfigured",
        ),
    ];
    for (command, current, status) in cases {
        assert_eq!(state(command), (current.into(), status.into()), "{command}");
    }
}
