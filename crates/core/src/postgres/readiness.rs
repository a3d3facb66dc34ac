//! Readiness validation: can this user back up this database? And if not, the grant
//! script that makes it so.
//!
//! Run on `backup-instance create` and before every backup, as Azure does. It checks the
//! privileges `pg_dump` needs (CONNECT on the database, USAGE on every schema it dumps,
//! SELECT on every table and sequence whose data it reads) and, when some are missing,
//! names the objects and gives a grant script read from the catalog for the actual user.
//!
//! The script must work as printed by whoever may run it. A role can grant only on what
//! it owns (or holds WITH GRANT OPTION), and set default privileges only for itself and
//! the roles it belongs to, so the script comes in parts, one per owning role, each
//! headed by the role that must run it (or a superuser). It grants nothing on system
//! schemas or an extension's objects, which `pg_dump` does not read (an extension's
//! configuration tables aside), and sets default privileges `FOR ROLE` every owner, so
//! tables created later stay readable. When only tables or sequences are missing (created
//! after the grants by a role without such defaults), the error gives the grants for just
//! those. Every identifier is quoted by the server's `quote_ident`.

use crate::model::code::ErrorCode;
use std::fmt;

use tokio_postgres::Client;

/// Objects listed in an error before "and N more".
const LIST_LIMIT: usize = 20;

/// What the server and database look like, recorded in the recovery point.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseFacts {
    pub server_version: String,
    pub server_version_num: i32,
    pub database_size: i64,
    pub user: String,
}

impl DatabaseFacts {
    pub fn major(&self) -> u32 {
        (self.server_version_num / 10000) as u32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("{}", missing_message(user, database, privileges))]
    MissingPermissions {
        user: String,
        database: String,
        privileges: Box<Privileges>,
    },
    #[error("checking privileges failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

impl ReadinessError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ReadinessError::MissingPermissions { .. } => ErrorCode::UserErrorMissingDBPermissions,
            ReadinessError::Query(_) => ErrorCode::UserErrorDBQueryFailed,
        }
    }
}

/// The error's text: what is missing, then the script that grants it. When only tables or
/// sequences are missing (objects created after the grants), the grants for just those,
/// so a failed scheduled backup says exactly what to run.
fn missing_message(user: &str, database: &str, p: &Privileges) -> String {
    let missing = p.missing();
    let mut listed = missing
        .iter()
        .take(LIST_LIMIT)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > LIST_LIMIT {
        listed.push_str(&format!(", and {} more", missing.len() - LIST_LIMIT));
    }
    let (why, script) = if p.only_new_relations_missing() {
        (
            format!(
                "\"{user}\" reads the other tables: these are new, created by roles whose default privileges do not cover it. Grant just these"
            ),
            GrantScript::unreadable_only(p),
        )
    } else {
        ("Grant them".to_string(), GrantScript::everything(p))
    };
    format!(
        "user \"{user}\" lacks the privileges a backup needs on database \"{database}\": {listed}.\n\
         {why} by running this connected to \"{database}\", each part as the role it names \
         (or a member of that role, or a superuser):\n\n{script}"
    )
}

pub async fn database_facts(client: &Client) -> Result<DatabaseFacts, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
             pg_database_size(current_database()), current_user::text",
            &[],
        )
        .await?;
    Ok(DatabaseFacts {
        server_version: row.get(0),
        server_version_num: row.get(1),
        database_size: row.get(2),
        user: row.get(3),
    })
}

/// Checks the backup privileges of the connected user on the connected database.
pub async fn check_backup_privileges(client: &Client) -> Result<(), ReadinessError> {
    let who = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await?;
    let (user, database): (String, String) = (who.get(0), who.get(1));
    let privileges = read_privileges(client, &user).await?;
    if privileges.missing().is_empty() {
        return Ok(());
    }
    Err(ReadinessError::MissingPermissions {
        user,
        database,
        privileges: Box::new(privileges),
    })
}

/// The whole grant script for `user` on the connected database, read from the catalog
/// by any role (the catalog is readable by all).
pub async fn grant_script_for(client: &Client, user: &str) -> Result<GrantScript, ReadinessError> {
    Ok(GrantScript::everything(
        &read_privileges(client, user).await?,
    ))
}

/// The whole grant script for `user` on the database a `postgres://` URL names, read with the
/// URL's login (no TLS: a local server): for `pgvault demo`, which grants its own backup user
/// as an administrator would.
pub async fn grant_script_at(url: &str, user: &str) -> Result<GrantScript, ReadinessError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let script = grant_script_for(&client, user).await;
    drop(client);
    let _ = connection.await;
    script
}

/// The owner that can grant on an object owned by `role_oid`: `pg_database_owner` stands
/// for the database's owner.
fn granting_owner(role_oid: &str) -> String {
    format!(
        "(CASE WHEN pg_get_userbyid({role_oid}) = 'pg_database_owner' \
         THEN (SELECT datdba FROM pg_database WHERE datname = current_database()) ELSE {role_oid} END)"
    )
}

/// Not a system schema: `pg_catalog`, `information_schema`, `pg_toast`, `pg_temp_N` and
/// `pg_toast_temp_N` (a user cannot create a schema named `pg_...`).
fn user_schema(n: &str) -> String {
    format!(
        "({n}.nspname NOT IN ('pg_catalog', 'information_schema') AND {n}.nspname NOT LIKE 'pg\\_%')"
    )
}

fn extension_member(catalog: &str, oid: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

/// An extension's configuration table or sequence: `pg_dump` dumps its data.
fn extension_config(oid: &str) -> String {
    format!("{oid} IN (SELECT unnest(x.extconfig) FROM pg_extension x)")
}

/// A table (plain or partitioned) or sequence whose data `pg_dump` reads: views,
/// materialized views and foreign tables are dumped as definitions only, and an
/// extension's objects come back with `CREATE EXTENSION`, but for its configuration.
fn dumped_relation(c: &str, n: &str) -> String {
    format!(
        "({c}.relkind IN ('r', 'p', 'S') AND {} AND (NOT {} OR {}))",
        user_schema(n),
        extension_member("pg_class", &format!("{c}.oid")),
        extension_config(&format!("{c}.oid"))
    )
}

/// Whether `role_oid`'s default privileges in the whole database give `$1` (or PUBLIC)
/// `privilege` on objects of `objtype`.
fn has_default(role_oid: &str, objtype: char, privilege: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a \
         WHERE d.defaclrole = {role_oid} AND d.defaclnamespace = 0 AND d.defaclobjtype = '{objtype}' \
           AND a.privilege_type = '{privilege}' AND (a.grantee = 0 OR pg_get_userbyid(a.grantee) = $1))"
    )
}

/// Reads from the catalog what `user` lacks for a backup and who can grant it.
pub async fn read_privileges(
    client: &Client,
    user: &str,
) -> Result<Privileges, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT quote_ident($1), quote_ident(current_database()), quote_ident(pg_get_userbyid(d.datdba)), \
                    has_database_privilege($1, current_database(), 'CONNECT'), \
                    current_setting('server_version_num')::int >= 100000 \
             FROM pg_database d WHERE d.datname = current_database()",
            &[&user],
        )
        .await?;
    let mut p = Privileges {
        user: row.get(0),
        database: row.get(1),
        database_owner: row.get(2),
        connect: row.get(3),
        schema_defaults: row.get(4),
        ..Privileges::default()
    };

    let owner_of = |oid: &str| format!("quote_ident(pg_get_userbyid({}))", granting_owner(oid));
    let schemas = format!(
        "SELECT quote_ident(n.nspname), {nsp_owner}, has_schema_privilege($1, n.oid, 'USAGE'), \
                ARRAY(SELECT DISTINCT {rel_owner} FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1), \
                ARRAY(SELECT DISTINCT {rel_owner} FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'S' ORDER BY 1) \
         FROM pg_namespace n \
         WHERE {user_schema} AND (NOT {member} OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND {config})) \
         ORDER BY n.nspname",
        nsp_owner = owner_of("n.nspowner"),
        rel_owner = owner_of("c.relowner"),
        user_schema = user_schema("n"),
        member = extension_member("pg_namespace", "n.oid"),
        config = extension_config("c.oid"),
    );
    for row in client.query(&schemas, &[&user]).await? {
        p.schemas.push(SchemaFacts {
            name: row.get(0),
            owner: row.get(1),
            usage: row.get(2),
            table_owners: row.get(3),
            sequence_owners: row.get(4),
        });
    }

    let unreadable = format!(
        "SELECT quote_ident(n.nspname), quote_ident(c.relname), c.relkind = 'S', {owner} \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {dumped} AND NOT has_table_privilege($1, c.oid, 'SELECT') \
         ORDER BY n.nspname, c.relname",
        owner = owner_of("c.relowner"),
        dumped = dumped_relation("c", "n"),
    );
    let readable = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {dumped} AND has_table_privilege($1, c.oid, 'SELECT')",
        dumped = dumped_relation("c", "n"),
    );
    p.readable = client.query_one(&readable, &[&user]).await?.get(0);
    for row in client.query(&unreadable, &[&user]).await? {
        p.unreadable.push(Relation {
            schema: row.get(0),
            name: row.get(1),
            kind: if row.get(2) {
                RelationKind::Sequence
            } else {
                RelationKind::Table
            },
            owner: row.get(3),
        });
    }

    // Tables with row-level security: pg_dump reads with row security off, which only their
    // owner (and members of its role), a superuser or a BYPASSRLS role may.
    let rls = format!(
        "SELECT quote_ident(n.nspname), quote_ident(c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {dumped} AND c.relrowsecurity AND NOT pg_has_role($1, c.relowner, 'USAGE') \
           AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = $1 AND (r.rolsuper OR r.rolbypassrls)) \
         ORDER BY n.nspname, c.relname",
        dumped = dumped_relation("c", "n"),
    );
    for row in client.query(&rls, &[&user]).await? {
        p.row_security.push(format!(
            "{}.{}",
            row.get::<_, String>(0),
            row.get::<_, String>(1)
        ));
    }

    // Large objects the user cannot read: pg_dump reads every one (`lo_open`). The check is
    // written out rather than `has_largeobject_privilege`, which only PostgreSQL 17 has: the
    // owner, a member of the owner's role, a grantee (or PUBLIC), a superuser, or
    // `lo_compat_privileges`, which turns the checks off.
    let large_objects = format!(
        "SELECT l.oid::bigint, {owner} FROM pg_largeobject_metadata l \
         WHERE NOT (current_setting('lo_compat_privileges')::bool \
                    OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = $1 AND r.rolsuper) \
                    OR pg_has_role($1, l.lomowner, 'USAGE') \
                    OR EXISTS (SELECT 1 FROM aclexplode(l.lomacl) a WHERE a.privilege_type = 'SELECT' \
                               AND (a.grantee = 0 OR pg_has_role($1, a.grantee, 'USAGE')))) \
         ORDER BY l.oid",
        owner = owner_of("l.lomowner"),
    );
    for row in client.query(&large_objects, &[&user]).await? {
        p.large_objects.push(LargeObject {
            oid: row.get(0),
            owner: row.get(1),
        });
    }

    // The roles that own what pg_dump reads (an extension's objects aside: they are
    // created by CREATE EXTENSION, not by the role later).
    let owners = format!(
        "WITH owners AS ( \
             SELECT {nsp_owner} AS r FROM pg_namespace n WHERE {user_schema} AND NOT {nsp_member} \
             UNION \
             SELECT {rel_owner} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'S') AND {user_schema} AND NOT {rel_member}) \
         SELECT quote_ident(pg_get_userbyid(o.r)), {tables}, {sequences}, {schemas} \
         FROM owners o WHERE pg_get_userbyid(o.r) <> $1 ORDER BY 1",
        nsp_owner = granting_owner("n.nspowner"),
        rel_owner = granting_owner("c.relowner"),
        user_schema = user_schema("n"),
        nsp_member = extension_member("pg_namespace", "n.oid"),
        rel_member = extension_member("pg_class", "c.oid"),
        tables = has_default("o.r", 'r', "SELECT"),
        sequences = has_default("o.r", 'S', "SELECT"),
        schemas = has_default("o.r", 'n', "USAGE"),
    );
    for row in client.query(&owners, &[&user]).await? {
        p.owners.push(OwnerDefaults {
            role: row.get(0),
            tables: row.get(1),
            sequences: row.get(2),
            schemas: row.get(3),
        });
    }
    Ok(p)
}
/// A relation whose data `pg_dump` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    Sequence,
}

impl RelationKind {
    fn word(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::Sequence => "sequence",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            RelationKind::Table => "TABLES",
            RelationKind::Sequence => "SEQUENCES",
        }
    }
}

/// What the catalog says about a user's backup privileges on a database, and who can
/// grant what is missing. Every name is an SQL identifier already quoted by the server's
/// `quote_ident`, so it is pasted into statements as it is; roles are the ones that can
/// grant: an object owned by `pg_database_owner` (PostgreSQL 15's `public` schema) is
/// the database owner's to grant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Privileges {
    pub user: String,
    pub database: String,
    pub database_owner: String,
    pub connect: bool,
    /// The schemas `pg_dump` reads: not the system ones, not an extension's.
    pub schemas: Vec<SchemaFacts>,
    /// Tables and sequences whose data `pg_dump` reads and the user cannot SELECT.
    pub unreadable: Vec<Relation>,
    /// Large objects the user cannot SELECT (`pg_dump` reads them all).
    pub large_objects: Vec<LargeObject>,
    /// Tables (`schema.name`) with row-level security the user neither owns nor bypasses:
    /// `pg_dump` reads with row security off and fails on them without BYPASSRLS.
    pub row_security: Vec<String>,
    /// How many tables and sequences whose data `pg_dump` reads the user can SELECT.
    pub readable: i64,
    /// Every role that owns a schema, table or sequence `pg_dump` reads (the user aside).
    pub owners: Vec<OwnerDefaults>,
    /// `ALTER DEFAULT PRIVILEGES ... ON SCHEMAS` exists (PostgreSQL 10 and later).
    pub schema_defaults: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemaFacts {
    pub name: String,
    pub owner: String,
    pub usage: bool,
    /// The owners of every relation `GRANT ... ON ALL TABLES IN SCHEMA` touches (tables,
    /// partitioned tables, views, materialized views, foreign tables, an extension's too).
    pub table_owners: Vec<String>,
    /// The owners of every sequence in the schema.
    pub sequence_owners: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub owner: String,
}

/// A large object, by its oid, and the role that can grant on it.
#[derive(Clone, Debug, PartialEq)]
pub struct LargeObject {
    pub oid: i64,
    pub owner: String,
}

/// A role that owns objects, and whether its default privileges already give the user
/// what it creates later.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerDefaults {
    pub role: String,
    pub tables: bool,
    pub sequences: bool,
    pub schemas: bool,
}

impl Privileges {
    /// What is missing, one phrase per object, in the error's words.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if !self.connect {
            missing.push(format!("CONNECT on database {}", self.database));
        }
        for s in self.schemas.iter().filter(|s| !s.usage) {
            missing.push(format!("USAGE on schema {}", s.name));
        }
        for r in &self.unreadable {
            missing.push(format!(
                "SELECT on {} {}.{}",
                r.kind.word(),
                r.schema,
                r.name
            ));
        }
        for l in &self.large_objects {
            missing.push(format!("SELECT on large object {}", l.oid));
        }
        for t in &self.row_security {
            missing.push(format!(
                "BYPASSRLS for table {t}, which has row-level security"
            ));
        }
        missing
    }

    /// Only some tables or sequences are missing, and the user reads the others: it was
    /// granted what a backup needs, and these came later from roles whose default
    /// privileges do not cover it. (A user granted nothing yet, on a database whose
    /// schemas all PUBLIC may use, gets the whole script.)
    fn only_new_relations_missing(&self) -> bool {
        self.connect
            && self.schemas.iter().all(|s| s.usage)
            && !(self.unreadable.is_empty() && self.large_objects.is_empty())
            && self.row_security.is_empty()
            && self.readable > 0
    }
}

/// A grant script in parts, one per role that must run it (or a superuser): a role can
/// grant only on what it owns (or holds WITH GRANT OPTION), and set default privileges
/// only for itself and the roles it is a member of.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantScript {
    database_owner: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Part {
    role: String,
    database: Option<String>,
    schemas: Vec<String>,
    tables: usize,
    sequences: usize,
    large_objects: usize,
    row_security: usize,
    grants: Vec<String>,
    defaults: Vec<String>,
}

impl GrantScript {
    /// Everything the user lacks, and the default privileges that keep what each owner
    /// creates later readable. Whole schemas are granted with `ON ALL TABLES IN SCHEMA`
    /// where one role owns every relation in them, object by object elsewhere (as a
    /// non-owner, `ON ALL TABLES` fails on the objects it cannot grant).
    pub fn everything(p: &Privileges) -> GrantScript {
        let mut script = GrantScript::new(p);
        if !p.connect {
            let part = script.part(&p.database_owner);
            part.database = Some(p.database.clone());
            part.grants.push(format!(
                "GRANT CONNECT ON DATABASE {} TO {};",
                p.database, p.user
            ));
        }
        for s in p.schemas.iter().filter(|s| !s.usage) {
            let part = script.part(&s.owner);
            part.schemas.push(s.name.clone());
            part.grants
                .push(format!("GRANT USAGE ON SCHEMA {} TO {};", s.name, p.user));
        }
        // Grouped by owner, schema and kind, in the catalog's order.
        let mut groups: Vec<(&str, &str, RelationKind, Vec<&Relation>)> = Vec::new();
        for r in &p.unreadable {
            match groups
                .iter_mut()
                .find(|g| g.0 == r.owner && g.1 == r.schema && g.2 == r.kind)
            {
                Some(g) => g.3.push(r),
                None => groups.push((&r.owner, &r.schema, r.kind, vec![r])),
            }
        }
        for (owner, schema, kind, relations) in groups {
            let sole_owner = p
                .schemas
                .iter()
                .find(|s| s.name == schema)
                .is_some_and(|s| {
                    let owners = match kind {
                        RelationKind::Table => &s.table_owners,
                        RelationKind::Sequence => &s.sequence_owners,
                    };
                    owners.len() == 1 && owners[0] == owner
                });
            let part = script.part(owner);
            match kind {
                RelationKind::Table => part.tables += relations.len(),
                RelationKind::Sequence => part.sequences += relations.len(),
            }
            if sole_owner {
                part.grants.push(format!(
                    "GRANT SELECT ON ALL {} IN SCHEMA {schema} TO {};",
                    kind.plural(),
                    p.user
                ));
            } else {
                part.grants
                    .extend(relations.iter().map(|r| grant_select(r, &p.user)));
            }
        }
        script.large_objects(p);
        if !p.row_security.is_empty() {
            // Only a superuser gives BYPASSRLS: a part of its own, last.
            let part = script.part(SUPERUSER);
            part.row_security = p.row_security.len();
            part.grants
                .push(format!("ALTER ROLE {} BYPASSRLS;", p.user));
        }
        for owner in &p.owners {
            script.defaults(p, owner);
        }
        script.finish()
    }

    /// Just the tables and sequences the user cannot read, object by object, with the
    /// default privileges their owners lack so the next ones stay readable.
    pub fn unreadable_only(p: &Privileges) -> GrantScript {
        let mut script = GrantScript::new(p);
        for r in &p.unreadable {
            let part = script.part(&r.owner);
            match r.kind {
                RelationKind::Table => part.tables += 1,
                RelationKind::Sequence => part.sequences += 1,
            }
            part.grants.push(grant_select(r, &p.user));
        }
        script.large_objects(p);
        for owner in &p.owners {
            if p.unreadable.iter().any(|r| r.owner == owner.role) {
                script.defaults(p, owner);
            }
        }
        script.finish()
    }

    /// The roles that must run a part, in the script's order.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .map(|p| p.role.as_str())
            .filter(|r| *r != SUPERUSER)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    fn new(p: &Privileges) -> GrantScript {
        GrantScript {
            database_owner: p.database_owner.clone(),
            parts: Vec::new(),
        }
    }

    fn part(&mut self, role: &str) -> &mut Part {
        let at = match self.parts.iter().position(|p| p.role == role) {
            Some(at) => at,
            None => {
                self.parts.push(Part {
                    role: role.to_string(),
                    ..Part::default()
                });
                self.parts.len() - 1
            }
        };
        &mut self.parts[at]
    }

    /// One `GRANT SELECT ON LARGE OBJECT oid, oid, ...` per owner. (Large objects have
    /// default privileges only from PostgreSQL 18, so ones created later need grants too.)
    fn large_objects(&mut self, p: &Privileges) {
        let mut owners: Vec<&str> = p.large_objects.iter().map(|l| l.owner.as_str()).collect();
        owners.dedup();
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            let oids: Vec<String> = p
                .large_objects
                .iter()
                .filter(|l| l.owner == owner)
                .map(|l| l.oid.to_string())
                .collect();
            let part = self.part(owner);
            part.large_objects += oids.len();
            part.grants.push(format!(
                "GRANT SELECT ON LARGE OBJECT {} TO {};",
                oids.join(", "),
                p.user
            ));
        }
    }

    fn defaults(&mut self, p: &Privileges, owner: &OwnerDefaults) {
        let mut lines = Vec::new();
        let role = &owner.role;
        if !owner.tables {
            lines.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {role} GRANT SELECT ON TABLES TO {};",
                p.user
            ));
        }
        if !owner.sequences {
            lines.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {role} GRANT SELECT ON SEQUENCES TO {};",
                p.user
            ));
        }
        if p.schema_defaults && !owner.schemas {
            lines.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {role} GRANT USAGE ON SCHEMAS TO {};",
                p.user
            ));
        }
        if !lines.is_empty() {
            self.part(role).defaults = lines;
        }
    }

    fn finish(mut self) -> GrantScript {
        // The database owner's part first: it is the one most likely to run all of it; the
        // superuser's last.
        let first = self.database_owner.clone();
        self.parts.sort_by(|a, b| {
            (a.role == SUPERUSER, a.role != first, &a.role).cmp(&(
                b.role == SUPERUSER,
                b.role != first,
                &b.role,
            ))
        });
        self
    }
}

/// The part only a superuser can run (no role is named by an empty identifier).
const SUPERUSER: &str = "";

fn grant_select(r: &Relation, user: &str) -> String {
    format!(
        "GRANT SELECT ON {} {}.{} TO {user};",
        r.kind.word().to_uppercase(),
        r.schema,
        r.name
    )
}

impl fmt::Display for GrantScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            if part.role == SUPERUSER {
                write!(
                    f,
                    "-- as a superuser (row-level security on {} {}):",
                    part.row_security,
                    if part.row_security == 1 {
                        "table"
                    } else {
                        "tables"
                    }
                )?;
                for line in &part.grants {
                    write!(f, "\n{line}")?;
                }
                continue;
            }
            write!(f, "-- as {} or a superuser", part.role)?;
            let mut owns = Vec::new();
            if let Some(database) = &part.database {
                owns.push(format!("database {database}"));
            }
            if !part.schemas.is_empty() {
                let word = if part.schemas.len() == 1 {
                    "schema"
                } else {
                    "schemas"
                };
                owns.push(format!("{word} {}", part.schemas.join(", ")));
            }
            for (n, word) in [
                (part.tables, "table"),
                (part.sequences, "sequence"),
                (part.large_objects, "large object"),
            ] {
                match n {
                    0 => {}
                    1 => owns.push(format!("1 {word}")),
                    n => owns.push(format!("{n} {word}s")),
                }
            }
            if owns.is_empty() {
                f.write_str(":")?;
            } else {
                write!(f, " (owner of {}):", owns.join(", "))?;
            }
            for line in &part.grants {
                write!(f, "\n{line}")?;
            }
            if !part.defaults.is_empty() {
                write!(
                    f,
                    "\n-- so that what {} creates later is readable too:",
                    part.role
                )?;
                for line in &part.defaults {
                    write!(f, "\n{line}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(
        name: &str,
        owner: &str,
        usage: bool,
        tables: &[&str],
        sequences: &[&str],
    ) -> SchemaFacts {
        SchemaFacts {
            name: name.into(),
            owner: owner.into(),
            usage,
            table_owners: tables.iter().map(|s| s.to_string()).collect(),
            sequence_owners: sequences.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn table(schema: &str, name: &str, owner: &str) -> Relation {
        Relation {
            schema: schema.into(),
            name: name.into(),
            kind: RelationKind::Table,
            owner: owner.into(),
        }
    }

    fn sequence(schema: &str, name: &str, owner: &str) -> Relation {
        Relation {
            kind: RelationKind::Sequence,
            ..table(schema, name, owner)
        }
    }

    fn no_defaults(role: &str) -> OwnerDefaults {
        OwnerDefaults {
            role: role.into(),
            ..OwnerDefaults::default()
        }
    }

    /// A database owned by `appowner` with `public` and `inventory`, nothing granted yet.
    fn fresh() -> Privileges {
        Privileges {
            user: "backup".into(),
            database: "shop".into(),
            database_owner: "appowner".into(),
            connect: true,
            schemas: vec![
                schema("inventory", "appowner", false, &["appowner"], &["appowner"]),
                schema("public", "appowner", true, &["appowner"], &["appowner"]),
            ],
            unreadable: vec![
                table("inventory", "film", "appowner"),
                sequence("inventory", "film_film_id_seq", "appowner"),
                table("public", "customer", "appowner"),
                sequence("public", "customer_customer_id_seq", "appowner"),
            ],
            large_objects: Vec::new(),
            row_security: Vec::new(),
            readable: 0,
            owners: vec![no_defaults("appowner")],
            schema_defaults: true,
        }
    }

    #[test]
    fn one_owner_gets_one_part_with_whole_schemas_and_default_privileges() {
        let script = GrantScript::everything(&fresh()).to_string();
        assert_eq!(
            script,
            "-- as appowner or a superuser (owner of schema inventory, 2 tables, 2 sequences):\n\
             GRANT USAGE ON SCHEMA inventory TO backup;\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA inventory TO backup;\n\
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA inventory TO backup;\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO backup;\n\
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO backup;\n\
             -- so that what appowner creates later is readable too:\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE appowner GRANT SELECT ON TABLES TO backup;\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE appowner GRANT SELECT ON SEQUENCES TO backup;\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE appowner GRANT USAGE ON SCHEMAS TO backup;"
        );
    }

    #[test]
    fn split_ownership_gives_each_owner_its_part_database_owner_first() {
        let mut p = fresh();
        p.database_owner = "zed".into();
        p.connect = false;
        p.schemas[0] = schema(
            "inventory",
            "\"Stock Keeper\"",
            false,
            &["\"Stock Keeper\""],
            &["\"Stock Keeper\""],
        );
        p.unreadable[0].owner = "\"Stock Keeper\"".into();
        p.unreadable[1].owner = "\"Stock Keeper\"".into();
        p.owners = vec![no_defaults("\"Stock Keeper\""), no_defaults("appowner")];
        p.schema_defaults = false;
        let script = GrantScript::everything(&p);
        assert_eq!(
            script.roles().collect::<Vec<_>>(),
            ["zed", "\"Stock Keeper\"", "appowner"]
        );
        let text = script.to_string();
        let parts: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(
            parts[0],
            "-- as zed or a superuser (owner of database shop):\nGRANT CONNECT ON DATABASE shop TO backup;"
        );
        assert!(
            parts[1].starts_with("-- as \"Stock Keeper\" or a superuser (owner of schema inventory, 1 table, 1 sequence):\nGRANT USAGE ON SCHEMA inventory TO backup;\nGRANT SELECT ON ALL TABLES IN SCHEMA inventory TO backup;"),
            "{text}"
        );
        assert!(parts[1].contains(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"Stock Keeper\" GRANT SELECT ON TABLES TO backup;"
        ));
        assert!(
            parts[2].starts_with("-- as appowner or a superuser (owner of 1 table, 1 sequence):\n"),
            "{text}"
        );
        assert!(!parts[2].contains("inventory"), "{text}");
        assert!(
            !text.contains("ON SCHEMAS"),
            "not before PostgreSQL 10: {text}"
        );
    }

    #[test]
    fn a_schema_with_several_owners_is_granted_object_by_object() {
        let mut p = fresh();
        // A view owned by someone else: ON ALL TABLES IN SCHEMA as appowner would fail on it.
        p.schemas[1].table_owners = vec!["appowner".into(), "reporting".into()];
        let text = GrantScript::everything(&p).to_string();
        assert!(
            text.contains("GRANT SELECT ON TABLE public.customer TO backup;"),
            "{text}"
        );
        assert!(!text.contains("ALL TABLES IN SCHEMA public"), "{text}");
        assert!(
            text.contains("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO backup;"),
            "{text}"
        );
    }

    #[test]
    fn defaults_already_in_place_are_not_repeated() {
        let mut p = fresh();
        p.owners = vec![OwnerDefaults {
            role: "appowner".into(),
            tables: true,
            sequences: true,
            schemas: false,
        }];
        let text = GrantScript::everything(&p).to_string();
        assert!(!text.contains("ON TABLES TO"), "{text}");
        assert!(
            text.contains(
                "ALTER DEFAULT PRIVILEGES FOR ROLE appowner GRANT USAGE ON SCHEMAS TO backup;"
            ),
            "{text}"
        );
    }

    /// A table created later by a role whose default privileges were never set.
    fn late_table() -> Privileges {
        let mut p = fresh();
        p.schemas.iter_mut().for_each(|s| s.usage = true);
        p.unreadable = vec![table("public", "rw_newtable", "etl")];
        p.readable = 6;
        p.owners = vec![
            OwnerDefaults {
                role: "appowner".into(),
                tables: true,
                sequences: true,
                schemas: true,
            },
            no_defaults("etl"),
        ];
        p
    }

    /// Large objects are granted in one statement per owner, in that owner's part, and ones
    /// added later are named on their own like new tables.
    #[test]
    fn large_objects_are_granted_by_their_owners() {
        let mut p = fresh();
        p.large_objects = vec![
            LargeObject {
                oid: 16401,
                owner: "appowner".into(),
            },
            LargeObject {
                oid: 16402,
                owner: "etl".into(),
            },
            LargeObject {
                oid: 16403,
                owner: "appowner".into(),
            },
        ];
        let script = GrantScript::everything(&p).to_string();
        assert!(
            script.contains("(owner of schema inventory, 2 tables, 2 sequences, 2 large objects):"),
            "{script}"
        );
        assert!(
            script.contains("GRANT SELECT ON LARGE OBJECT 16401, 16403 TO backup;"),
            "{script}"
        );
        assert!(
            script.contains("-- as etl or a superuser (owner of 1 large object):\nGRANT SELECT ON LARGE OBJECT 16402 TO backup;"),
            "{script}"
        );
        let mut late = late_table();
        late.unreadable.clear();
        late.large_objects = vec![LargeObject {
            oid: 16404,
            owner: "appowner".into(),
        }];
        let message = missing_message("backup", "shop", &late);
        assert!(
            message.contains(": SELECT on large object 16404.\n"),
            "{message}"
        );
        assert!(
            message.ends_with("-- as appowner or a superuser (owner of 1 large object):\nGRANT SELECT ON LARGE OBJECT 16404 TO backup;"),
            "{message}"
        );
    }

    #[test]
    fn tables_created_later_get_just_their_grants() {
        let p = late_table();
        let message = missing_message("backup", "shop", &p);
        assert!(
            message.starts_with("user \"backup\" lacks the privileges a backup needs on database \"shop\": SELECT on table public.rw_newtable.\n"),
            "{message}"
        );
        let script = message.split_once("\n\n").unwrap().1;
        assert_eq!(
            script,
            "-- as etl or a superuser (owner of 1 table):\n\
             GRANT SELECT ON TABLE public.rw_newtable TO backup;\n\
             -- so that what etl creates later is readable too:\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE etl GRANT SELECT ON TABLES TO backup;\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE etl GRANT SELECT ON SEQUENCES TO backup;\n\
             ALTER DEFAULT PRIVILEGES FOR ROLE etl GRANT USAGE ON SCHEMAS TO backup;"
        );
    }

    #[test]
    fn a_fresh_user_gets_the_whole_script() {
        let p = fresh();
        let message = missing_message("backup", "shop", &p);
        assert!(message.contains("USAGE on schema inventory, SELECT on table inventory.film, SELECT on sequence inventory.film_film_id_seq"), "{message}");
        assert!(
            message.ends_with(&GrantScript::everything(&p).to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_user_granted_nothing_gets_the_whole_script_even_where_public_may_use_every_schema() {
        let mut p = fresh();
        p.schemas.iter_mut().for_each(|s| s.usage = true);
        let message = missing_message("backup", "shop", &p);
        assert!(
            message.contains("\nGrant them by running this"),
            "{message}"
        );
        assert!(
            message.contains("GRANT SELECT ON ALL TABLES IN SCHEMA public TO backup;"),
            "{message}"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let mut p = late_table();
        p.unreadable = (0..25)
            .map(|i| table("public", &format!("t{i}"), "etl"))
            .collect();
        let message = missing_message("backup", "shop", &p);
        assert!(
            message.contains("SELECT on table public.t19, and 5 more.\n"),
            "{message}"
        );
        // The script still names every one.
        assert!(
            message.contains("GRANT SELECT ON TABLE public.t24 TO backup;"),
            "{message}"
        );
    }

    #[test]
    fn nothing_missing_means_nothing_to_grant() {
        let mut p = late_table();
        p.unreadable.clear();
        assert!(p.missing().is_empty());
        assert!(GrantScript::unreadable_only(&p).is_empty());
    }
}
