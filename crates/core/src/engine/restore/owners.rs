//! `--keep-owners`: after pg_restore made every object the restoring user's, pg_restore's
//! own ownership and privilege statements for the restored part are applied one by one
//! (the database's owner first), and what the user may not give away is recorded.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::options::Selection;
use super::pg_restore::{FeedError, TempFile, ToolRun, feed_tool, restore_tool};
use crate::engine::leftovers::error_chain;
use crate::engine::vault::Vault;
use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::postgres::archive::recorded_archive;
use crate::postgres::connection::ConnectParams;
use crate::store::manifest::Manifest;

/// What `--keep-owners` restored, and what it could not.
#[derive(Debug, Default)]
pub(super) struct OwnersApplied {
    /// Ownership and privilege statements that ran.
    applied: usize,
    /// Roles the target lacks: their statements were not run.
    missing_roles: std::collections::BTreeSet<String>,
    /// Objects the restoring user may not give to their owner (`TABLE public.rental`), by
    /// owner: they stay the restoring user's.
    fallbacks: std::collections::BTreeMap<String, Vec<String>>,
    /// Privilege statements PostgreSQL refused the restoring user.
    refused_privileges: Vec<String>,
}

impl OwnersApplied {
    /// The step's detail: what was done.
    pub(super) fn summary(&self) -> String {
        let kept: usize = self.fallbacks.values().map(Vec::len).sum();
        format!(
            "{} ownership and privilege statements applied; {kept} objects kept by the restoring user; {} roles missing on the target",
            self.applied,
            self.missing_roles.len()
        )
    }

    /// One warning per kind of shortfall, naming what to do.
    pub(super) fn warnings(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing_roles.is_empty() {
            out.push(format!(
                "owners and privileges were restored except for roles the target server lacks: {} (their objects belong to the restoring user; create the roles and restore again to keep them)",
                self.missing_roles.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.fallbacks.is_empty() {
            let roles: Vec<&str> = self.fallbacks.keys().map(String::as_str).collect();
            let count: usize = self.fallbacks.values().map(Vec::len).sum();
            out.push(format!(
                "--keep-owners: `{user}` may not give objects to {} (only a superuser or a member of the role may, and the role needs CREATE on the object's schema), so {count} objects stay owned by `{user}` (listed in the job's OwnersNotKept); to keep their owners, grant the roles as a superuser ({}) and restore again",
                roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", "),
                roles
                    .iter()
                    .map(|r| format!("GRANT {} TO {};", quote_ident(r), quote_ident(user)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !self.refused_privileges.is_empty() {
            out.push(format!(
                "--keep-owners: {} privilege statements were refused to `{user}` and not restored: {}",
                self.refused_privileges.len(),
                cap_list(&self.refused_privileges, 10)
            ));
        }
        out
    }

    /// The job's record of the objects whose owner was not kept: `owner: kind name, ...`.
    pub(super) fn not_kept(&self) -> Option<String> {
        if self.fallbacks.is_empty() {
            return None;
        }
        let text = self
            .fallbacks
            .iter()
            .map(|(role, objects)| format!("{role}: {}", objects.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        Some(crate::model::job::cap_text(&text, 4096))
    }
}

/// The first `n` items, and how many more.
pub(super) fn cap_list(items: &[String], n: usize) -> String {
    let mut shown = items.iter().take(n).cloned().collect::<Vec<_>>().join(" ");
    if items.len() > n {
        shown.push_str(&format!(" and {} more", items.len() - n));
    }
    shown
}

/// Restores owners and privileges after pg_restore made every object the restoring user's.
///
/// The statements are the ones pg_restore itself writes for the restored part of the archive
/// (`pg_restore --schema-only` with the same selection: an `ALTER <kind> <name> OWNER TO`
/// for every object kind pg_dump emits, with a function's signature, a large object's OID,
/// then the `GRANT`s and `REVOKE`s), so no object kind needs knowing here. Each runs on its
/// own: those naming a role the target lacks are not run; one PostgreSQL refuses for lack of
/// privilege (the restoring user is not a superuser and may not act as the owner role) leaves
/// the object with the restoring user and is recorded; any other failure fails the restore.
pub(super) async fn apply_owners_and_privileges(
    vault: &Vault,
    manifest: &Manifest,
    params: &ConnectParams,
    database: &str,
    selection: &Selection,
) -> Result<OwnersApplied> {
    let client = params.connect().await?;
    let query = |e: tokio_postgres::Error| {
        Error::caused_by(ErrorCode::UserErrorDBQueryFailed, e.to_string(), e)
    };
    let existing: std::collections::HashSet<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(query)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(query)?
        .get(0);
    let pg_restore = restore_tool(manifest, (version / 10000) as u32)?;
    let sql_file = TempFile::register(&selection.leftovers, "sql").map_err(|e| match e {
        FeedError::Other(e) => e,
        FeedError::Tool(e) => Error::new(ErrorCode::RestoreStagingFailed, e),
    })?;
    let mut args = vec![
        "--schema-only".to_owned(),
        format!("--file={}", sql_file.0.display()),
    ];
    args.extend(
        selection
            .args
            .iter()
            .filter(|a| {
                !matches!(
                    a.as_str(),
                    "--schema-only" | "--data-only" | "--no-owner" | "--no-acl"
                )
            })
            .cloned(),
    );
    let definitions = Selection {
        leftovers: selection.leftovers.clone(),
        args: Vec::new(),
        jobs: None,
        list: selection.list.clone(),
        listed: None,
        schemas: Vec::new(),
        warnings: Vec::new(),
        // Definitions only: the header and table of contents suffice.
        ranges: recorded_archive(manifest).map(|a| std::iter::once(0..a.toc_end).collect()),
    };
    let run = ToolRun::offline(&pg_restore, args);
    feed_tool(
        vault,
        manifest,
        run,
        &definitions,
        Arc::new(AtomicU64::new(0)),
        None,
    )
    .await
    .map_err(|e| match e {
        FeedError::Tool(stderr) => Error::new(
            ErrorCode::UserErrorPgRestoreFailed,
            format!("pg_restore could not list the ownership statements: {stderr}"),
        ),
        FeedError::Other(e) => e,
    })?;
    let sql = std::fs::read_to_string(&sql_file.0).map_err(|e| {
        Error::caused_by(
            ErrorCode::RestoreStagingFailed,
            format!("cannot read `{}`: {e}", sql_file.0.display()),
            e,
        )
    })?;
    drop(sql_file);
    let (mut statements, mut missing_roles) = ownership_statements(&sql, &existing);
    // The database's owner first, as `pg_restore --create` would set it: a schema can be
    // given only to a role that may create in the database, and a table only to one that may
    // create in its schema. pg_restore writes no statement for it into an existing database.
    let database_owner = recorded_archive(manifest)
        .iter()
        .flat_map(|a| &a.entries)
        .find(|e| e.desc == "DATABASE")
        .map(|e| e.owner.clone())
        .filter(|o| !o.is_empty());
    if let Some(owner) = database_owner {
        if existing.contains(&owner) {
            statements.insert(
                0,
                format!(
                    "ALTER DATABASE {} OWNER TO {};",
                    quote_ident(params.database()),
                    quote_ident(&owner)
                ),
            );
        } else {
            missing_roles.insert(owner);
        }
    }
    let mut applied = OwnersApplied {
        missing_roles,
        ..OwnersApplied::default()
    };
    for statement in &statements {
        match client.batch_execute(statement).await {
            Ok(()) => applied.applied += 1,
            // Refused for lack of privilege; or, for a serial column's sequence whose table
            // stayed with the restoring user, "cannot change owner of sequence ... linked to
            // table" (feature not supported): it follows its table, which already fell back.
            Err(e) if refused_owner(statement, &e) => {
                match owner_change(statement) {
                    Some((object, role)) => {
                        // The staging database is the target under another name for now.
                        let object = if object.starts_with("DATABASE ") {
                            format!("DATABASE {}", quote_ident(database))
                        } else {
                            object
                        };
                        // The log names the first few; the job lists them all.
                        let logged: usize = applied.fallbacks.values().map(Vec::len).sum();
                        if logged < LOGGED_FALLBACKS {
                            tracing::warn!(object = %object, owner = %role, error = %error_chain(&e), "--keep-owners: the object stays owned by the restoring user");
                        }
                        applied.fallbacks.entry(role).or_default().push(object);
                    }
                    None => {
                        tracing::warn!(statement = %statement, error = %error_chain(&e), "--keep-owners: a privilege statement was refused");
                        applied.refused_privileges.push(statement.clone());
                    }
                }
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::UserErrorPgRestoreFailed,
                    format!(
                        "restoring ownership failed at `{statement}`: {}",
                        error_chain(&e)
                    ),
                ));
            }
        }
    }
    Ok(applied)
}

/// How many objects left with the restoring user are named one by one in the log.
pub(super) const LOGGED_FALLBACKS: usize = 20;

/// Whether `statement` failed because the restoring user may not run it, rather than because
/// something is wrong: insufficient privilege, or an owner change of a sequence linked to a
/// table (which follows its table's owner, and fails only when that table's change did).
pub(super) fn refused_owner(statement: &str, e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => true,
        Some(code) if *code == SqlState::FEATURE_NOT_SUPPORTED => owner_change(statement).is_some(),
        _ => false,
    }
}

/// An identifier quoted as SQL wants it.
pub(super) use crate::postgres::quote_ident;

/// The object and new owner of an `ALTER <kind> <name> OWNER TO <role>;` statement.
pub(super) fn owner_change(statement: &str) -> Option<(String, String)> {
    let body = statement.strip_prefix("ALTER ")?;
    let at = body.rfind(" OWNER TO ")?;
    let role = statement_roles(statement).into_iter().next()?;
    Some((body[..at].to_owned(), role))
}

/// The `ALTER ... OWNER TO`, `GRANT`, `REVOKE` and `ALTER DEFAULT PRIVILEGES` statements of a
/// pg_restore SQL script (one line each, as pg_dump writes them) whose roles all exist, and
/// the missing roles of those left out. `PUBLIC` always exists.
pub(super) fn ownership_statements(
    sql: &str,
    existing: &std::collections::HashSet<String>,
) -> (Vec<String>, std::collections::BTreeSet<String>) {
    let mut keep = Vec::new();
    let mut skipped = std::collections::BTreeSet::new();
    for line in sql.lines().map(str::trim) {
        let is_owner = line.starts_with("ALTER ") && line.contains(" OWNER TO ");
        let is_acl = line.starts_with("GRANT ")
            || line.starts_with("REVOKE ")
            || line.starts_with("ALTER DEFAULT PRIVILEGES ");
        if !(is_owner || is_acl) || !line.ends_with(';') {
            continue;
        }
        let roles = statement_roles(line);
        let missing: Vec<String> = roles
            .into_iter()
            .filter(|r| r != "PUBLIC" && !existing.contains(r))
            .collect();
        if missing.is_empty() {
            keep.push(line.to_owned());
        } else {
            skipped.extend(missing);
        }
    }
    (keep, skipped)
}

/// The roles a one-line ownership or privilege statement names: after `OWNER TO`, `FOR ROLE`,
/// and the last ` TO ` (a grant) or ` FROM ` (a revoke).
pub(super) fn statement_roles(line: &str) -> Vec<String> {
    let body = line.trim_end_matches(';');
    let mut roles = Vec::new();
    let ident = |text: &str| -> Option<String> {
        let text = text.trim_start();
        if let Some(rest) = text.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        out.push('"');
                    } else {
                        return Some(out);
                    }
                } else {
                    out.push(c);
                }
            }
            None
        } else {
            text.split(|c: char| c.is_whitespace() || c == ',')
                .next()
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
        }
    };
    for keyword in [" OWNER TO ", " FOR ROLE "] {
        if let Some(i) = body.find(keyword) {
            roles.extend(ident(&body[i + keyword.len()..]));
        }
    }
    let grantee = if body.starts_with("REVOKE ") || body.contains(" REVOKE ") {
        body.rfind(" FROM ").map(|i| &body[i + 6..])
    } else if body.starts_with("GRANT ") || body.contains(" GRANT ") {
        body.rfind(" TO ").map(|i| &body[i + 4..])
    } else {
        None
    };
    if let Some(rest) = grantee {
        let rest = rest.split(" WITH ").next().unwrap_or(rest);
        let rest = rest.split(" GRANTED BY ").next().unwrap_or(rest);
        roles.extend(rest.split(',').filter_map(ident));
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_statements_naming_missing_roles_are_left_out() {
        let sql = r#"
SET statement_timeout = 0;
CREATE TABLE public.notes (id integer);
ALTER TABLE public.notes OWNER TO owner;
ALTER TABLE public.gone OWNER TO "Ghost ""Role""";
GRANT SELECT ON TABLE public.notes TO reader;
GRANT SELECT ON TABLE public.notes TO reader, ghost WITH GRANT OPTION;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE ghost IN SCHEMA public GRANT SELECT ON TABLES TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;
"#;
        let existing: std::collections::HashSet<String> =
            ["owner", "reader"].iter().map(|s| s.to_string()).collect();
        let (kept, skipped) = ownership_statements(sql, &existing);
        assert_eq!(
            kept,
            [
                "ALTER TABLE public.notes OWNER TO owner;",
                "GRANT SELECT ON TABLE public.notes TO reader;",
                "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
                "ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;",
            ]
        );
        assert_eq!(
            skipped.into_iter().collect::<Vec<_>>(),
            ["Ghost \"Role\"", "ghost"]
        );
    }
}
