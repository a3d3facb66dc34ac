//! Deleting vaults and policies, as az does: confirmed with --yes, a policy kept while an
//! instance uses it, a vault kept while it has instances; a vault in the home's own folder goes
//! with its files, one placed elsewhere is only unregistered.

use crate::support::{World, sample_database};

#[test]
fn policies_and_vaults_are_deleted_only_when_nothing_uses_them() {
    let w = World::new();
    let db = sample_database("deletion", 200);
    let placed = w.vault_with_policy("Placed");
    let secret = w.admin_secret(&db);
    let instance = w.protect("Placed", &db, &secret);

    let refused = w.fails(&["backup-policy", "delete", "-v", "Placed", "-n", "OssPolicy"]);
    assert!(
        refused.contains("UserErrorConfirmationRequired"),
        "{refused}"
    );
    let refused = w.fails(&[
        "backup-policy",
        "delete",
        "-v",
        "Placed",
        "-n",
        "OssPolicy",
        "--yes",
    ]);
    assert!(
        refused.contains("UserErrorPolicyInUse") && refused.contains(&instance),
        "a policy in use is kept, naming its instance: {refused}"
    );
    let refused = w.fails(&["backup-vault", "delete", "-v", "Placed", "--yes"]);
    assert!(refused.contains("UserErrorVaultNotEmpty"), "{refused}");

    w.json(&[
        "backup-instance",
        "delete",
        "-v",
        "Placed",
        "-n",
        &instance,
        "--yes",
    ]);
    let out = w.run(&[
        "backup-policy",
        "delete",
        "-v",
        "Placed",
        "-n",
        "OssPolicy",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = w.fails(&["backup-policy", "show", "-v", "Placed", "-n", "OssPolicy"]);
    assert!(gone.contains("UserErrorPolicyNotFound"), "{gone}");

    // A vault the user placed is unregistered; its folder stays theirs.
    let out = w.run(&["backup-vault", "delete", "-v", "Placed", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        w.fails(&["backup-vault", "show", "-v", "Placed"])
            .contains("UserErrorVaultNotFound")
    );
    assert!(
        placed.join("vault.json").exists(),
        "the placed vault's files were left"
    );

    // A vault in the home's own folder goes with its files, and the name is free again.
    w.json(&["backup-vault", "create", "-v", "Own"]);
    let own = w.path("home").join("vaults").join("Own");
    assert!(own.join("vault.json").exists(), "{}", own.display());
    let out = w.run(&["backup-vault", "delete", "-v", "Own", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!own.exists(), "the home's vault folder was removed");
    w.json(&["backup-vault", "create", "-v", "Own", "-g", "other-group"]);
}
