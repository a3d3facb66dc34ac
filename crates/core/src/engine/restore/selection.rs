//! What a selective restore (`--tables`, `--schemas`, `--exclude-tables`) gives pg_restore,
//! planned from the recovery point's recorded table of contents alone: the set of TOC entries
//! written as its `--use-list`.
//!
//! pg_restore's own `--table` selects a table's `TABLE` and `TABLE DATA` entries and nothing
//! else, so a table with a serial or identity column fails (its `DEFAULT nextval(...)` or
//! `SEQUENCE SET` names a sequence that was never created) and comes without its keys,
//! indexes and triggers. The plan here follows the archive's dependency ids instead:
//!
//! - **Roots**: the relations `--tables` names (tables, views, materialized views, foreign
//!   tables, sequences), and for `--schemas` the `SCHEMA` entry and every entry in it.
//! - **Dependents**: an entry *attached* to a selected relation, sequence or other dependent
//!   (its data, owned sequences and their values, defaults, constraints, indexes, triggers,
//!   rules, policies, statistics; comments, security labels and privileges of anything
//!   selected). `--no-table-dependents` keeps only data, sequences, defaults, comments and
//!   privileges.
//! - **Prerequisites**: what a selected entry's definition needs that is not a relation
//!   (its schema, the function a trigger or default calls, types, domains, collations,
//!   extensions, a sequence a default draws from) comes too, with its own prerequisites.
//! - An entry that needs a relation the plan does not include cannot be restored: a table
//!   named in `--tables` is then an error naming what to add; anything else (a foreign key
//!   to a table left out, a view over one) is left out with a warning.
//!
//! The plan is pure (a function of the TOC and the options), so it is tested on TOC shapes
//! without a server. The list keeps archive order: pg_restore restores in list order.

use std::collections::{HashMap, HashSet};

use crate::engine::{Error, Result};
use crate::model::code::ErrorCode;
use crate::postgres::archive::{ArchiveSummary, TocEntry};

/// Relations: objects of their own, never brought in because something else needs them.
const RELATIONS: &[&str] = &["TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"];

/// Entries that come with the relation (or sequence) they belong to, whatever the options.
const ALWAYS_ATTACHED: &[&str] = &[
    "TABLE DATA",
    "MATERIALIZED VIEW DATA",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "DEFAULT",
    "STATISTICS DATA",
    "COMMENT",
    "SECURITY LABEL",
    "ACL",
];

/// A table's structure: comes with it unless `--no-table-dependents`.
const STRUCTURE: &[&str] = &[
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "INDEX",
    "INDEX ATTACH",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
    "STATISTICS",
    "TABLE ATTACH",
];

/// Attributes of any object, a schema or a function as much as a table: they come with
/// whatever is restored.
const ATTRIBUTES: &[&str] = &["COMMENT", "SECURITY LABEL", "ACL"];

/// Entries that are data, or that a restore into an existing database never runs.
const NEVER_PULLED: &[&str] = &[
    "BLOBS",
    "BLOB",
    "LARGE OBJECTS",
    "LARGE OBJECT",
    "DATABASE",
    "DATABASE PROPERTIES",
    "DEFAULT ACL",
];

/// Set up by pg_restore whatever the list says; listed anyway.
const SESSION_SETTINGS: &[&str] = &["ENCODING", "STDSTRINGS", "SEARCHPATH"];

/// What to select.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub tables: &'a [String],
    pub schemas: &'a [String],
    pub exclude_tables: &'a [String],
    /// Indexes, constraints, triggers... of the selected tables (the default).
    pub with_dependents: bool,
}

/// The entries to restore and what the user should know about what was left out.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The dumpIds to restore.
    pub ids: HashSet<i32>,
    /// The `--use-list` file: the chosen entries in archive order.
    pub list: String,
    pub warnings: Vec<String>,
}

/// `table` or `schema.table`.
pub(crate) fn split_table(table: &str) -> (Option<&str>, &str) {
    match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    }
}

fn is(e: &TocEntry, kinds: &[&str]) -> bool {
    kinds.contains(&e.desc.as_str())
}

/// An entry's name for messages: `TABLE public.rental`, `FK CONSTRAINT public.rental x_fkey`.
fn describe(e: &TocEntry) -> String {
    if e.namespace.is_empty() {
        format!("{} {}", e.desc, e.tag)
    } else {
        format!("{} {}.{}", e.desc, e.namespace, e.tag)
    }
}

struct Toc<'a> {
    entries: &'a [TocEntry],
    by_id: HashMap<i32, &'a TocEntry>,
    /// Sequences with a `SEQUENCE OWNED BY` entry: serial columns' sequences, created by a
    /// `CREATE SEQUENCE` of their own (an identity column's has none: it is created by an
    /// `ALTER TABLE`, so it needs its table).
    owned: HashSet<i32>,
    /// `--exclude-tables` and everything depending on them: never restored.
    excluded: HashSet<i32>,
}

impl<'a> Toc<'a> {
    fn new(archive: &'a ArchiveSummary) -> Self {
        let by_id: HashMap<i32, &TocEntry> =
            archive.entries.iter().map(|e| (e.dump_id, e)).collect();
        let owned = archive
            .entries
            .iter()
            .filter(|e| e.desc == "SEQUENCE OWNED BY")
            .flat_map(|e| e.dependencies.iter().copied())
            .collect();
        Toc {
            entries: &archive.entries,
            by_id,
            owned,
            excluded: HashSet::new(),
        }
    }

    fn get(&self, id: i32) -> Option<&'a TocEntry> {
        self.by_id.get(&id).copied()
    }

    /// What an entry's definition needs restored before it. pg_dump records a serial
    /// column's sequence as depending on its table (for ordering), though `CREATE SEQUENCE`
    /// needs no table; `SEQUENCE OWNED BY` names the owning column without recording the
    /// table.
    fn requires(&self, e: &TocEntry) -> Vec<i32> {
        let mut out: Vec<i32> = e
            .dependencies
            .iter()
            .copied()
            .filter(|d| *d != e.dump_id && self.by_id.contains_key(d))
            .collect();
        if e.desc == "SEQUENCE" && self.owned.contains(&e.dump_id) {
            out.retain(|d| self.get(*d).is_none_or(|d| !is(d, RELATIONS)));
        }
        if e.desc == "SEQUENCE OWNED BY" {
            for seq in &e.dependencies {
                if let Some(seq) = self.get(*seq) {
                    out.extend(
                        seq.dependencies
                            .iter()
                            .copied()
                            .filter(|d| self.get(*d).is_some_and(|d| is(d, RELATIONS))),
                    );
                }
            }
        }
        out
    }

    /// Whether an entry that is not selected may be brought in because a selected one needs
    /// it: objects that are not relations, dependents or data (schemas, functions, types,
    /// extensions...) and sequences (a default may draw from another table's).
    fn pullable(&self, e: &TocEntry) -> bool {
        e.desc == "SEQUENCE"
            || !(is(e, RELATIONS)
                || is(e, ALWAYS_ATTACHED)
                || is(e, STRUCTURE)
                || is(e, NEVER_PULLED))
    }

    /// The entries to add so that `id` can be restored (its missing prerequisites, then
    /// itself), or the relations it needs that cannot be brought in.
    fn satisfy(&self, id: i32, selected: &HashSet<i32>) -> std::result::Result<Vec<i32>, Vec<i32>> {
        if self.excluded.contains(&id) {
            return Err(vec![id]);
        }
        let mut adding: Vec<i32> = Vec::new();
        let mut seen: HashSet<i32> = HashSet::new();
        let mut blocked: Vec<i32> = Vec::new();
        let mut stack = vec![id];
        seen.insert(id);
        while let Some(next) = stack.pop() {
            let Some(entry) = self.get(next) else {
                continue;
            };
            adding.push(next);
            for dep in self.requires(entry) {
                if selected.contains(&dep) || !seen.insert(dep) {
                    continue;
                }
                match self.get(dep) {
                    Some(_) if self.excluded.contains(&dep) => blocked.push(dep),
                    Some(d) if self.pullable(d) => stack.push(dep),
                    Some(_) => blocked.push(dep),
                    None => {}
                }
            }
        }
        if blocked.is_empty() {
            Ok(adding)
        } else {
            Err(blocked)
        }
    }

    /// Whether `e` belongs to a selected entry and comes with it.
    fn attached(&self, e: &TocEntry, selected: &HashSet<i32>, with_dependents: bool) -> bool {
        let attachable = is(e, ALWAYS_ATTACHED) || (with_dependents && is(e, STRUCTURE));
        if !attachable {
            return false;
        }
        let owners = e.dependencies.iter().filter(|d| selected.contains(d));
        if is(e, ATTRIBUTES) {
            return owners.count() > 0;
        }
        // A dependent belongs to a relation, a sequence or another dependent (an index's
        // partition attachment, a constraint's comment), never to the schema it is in.
        owners
            .filter_map(|d| self.get(*d))
            .any(|owner| is(owner, RELATIONS) || is(owner, ALWAYS_ATTACHED) || is(owner, STRUCTURE))
    }

    /// `schema.name` of the relations among `ids` (of every entry when none is one), for
    /// messages.
    fn relation_names(&self, ids: &[i32]) -> Vec<String> {
        let entries: Vec<&TocEntry> = ids.iter().filter_map(|d| self.get(*d)).collect();
        let any_relation = entries.iter().any(|d| is(d, RELATIONS));
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|d| !any_relation || is(d, RELATIONS))
            .map(|d| {
                if is(d, RELATIONS) {
                    format!("{}.{}", d.namespace, d.tag)
                } else {
                    describe(d)
                }
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Plans the `--use-list` of a selective restore.
pub(crate) fn plan(archive: &ArchiveSummary, req: &Request) -> Result<Plan> {
    let mut toc = Toc::new(archive);
    let matches_table = |e: &TocEntry, table: &str| {
        let (schema, name) = split_table(table);
        e.tag == name && schema.is_none_or(|s| s == e.namespace)
    };
    // Roots, in archive order; `named` are the relations --tables names, which must come.
    let mut roots: Vec<i32> = Vec::new();
    let mut named: HashSet<i32> = HashSet::new();
    let selecting = !req.tables.is_empty() || !req.schemas.is_empty();
    for table in req.tables {
        let found: Vec<i32> = toc
            .entries
            .iter()
            .filter(|e| (is(e, RELATIONS) || e.desc == "SEQUENCE") && matches_table(e, table))
            .map(|e| e.dump_id)
            .collect();
        if found.is_empty() {
            return Err(Error::new(
                ErrorCode::UserErrorTableNotFound,
                format!(
                    "--tables: the recovery point has no table `{table}`; `recovery-point show` lists what it holds"
                ),
            ));
        }
        named.extend(&found);
    }
    for schema in req.schemas {
        let found = toc
            .entries
            .iter()
            .any(|e| (e.desc == "SCHEMA" && e.tag == *schema) || e.namespace == *schema);
        if !found {
            return Err(Error::new(
                ErrorCode::UserErrorSchemaNotFound,
                format!(
                    "--schemas: the recovery point has no schema `{schema}`; `recovery-point show` lists what it holds"
                ),
            ));
        }
    }
    for e in toc.entries {
        let root = if selecting {
            named.contains(&e.dump_id)
                || req
                    .schemas
                    .iter()
                    .any(|s| e.namespace == *s || (e.desc == "SCHEMA" && e.tag == *s))
        } else {
            // Only --exclude-tables: everything, less the exclusions below.
            true
        };
        if root || is(e, SESSION_SETTINGS) {
            roots.push(e.dump_id);
        }
    }

    // Exclusions: the excluded tables and everything that depends on them, to a fixed point.
    let mut excluded: HashSet<i32> = HashSet::new();
    if !req.exclude_tables.is_empty() {
        for table in req.exclude_tables {
            let found: Vec<i32> = toc
                .entries
                .iter()
                .filter(|e| matches!(e.desc.as_str(), "TABLE" | "TABLE DATA"))
                .filter(|e| matches_table(e, table))
                .map(|e| e.dump_id)
                .collect();
            if found.is_empty() {
                return Err(Error::new(
                    ErrorCode::UserErrorTableNotFound,
                    format!("--exclude-tables: the recovery point has no table `{table}`"),
                ));
            }
            excluded.extend(found);
        }
        loop {
            let before = excluded.len();
            for e in toc.entries {
                if e.dependencies.iter().any(|d| excluded.contains(d)) {
                    excluded.insert(e.dump_id);
                }
            }
            if excluded.len() == before {
                break;
            }
        }
    }

    // A table both named and excluded is excluded: the narrower ask wins.
    roots.retain(|id| !excluded.contains(id));
    named.retain(|id| !excluded.contains(id));
    toc.excluded = excluded;
    let mut selected: HashSet<i32> = HashSet::new();
    if selecting {
        // To a fixed point: a root or dependent whose prerequisites are not all there yet
        // may be satisfiable once another one is in (a foreign key once the referenced
        // table's primary key is).
        loop {
            let before = selected.len();
            for id in &roots {
                if !selected.contains(id)
                    && let Ok(add) = toc.satisfy(*id, &selected)
                {
                    selected.extend(add);
                }
            }
            for e in toc.entries {
                if !selected.contains(&e.dump_id)
                    && toc.attached(e, &selected, req.with_dependents)
                    && let Ok(add) = toc.satisfy(e.dump_id, &selected)
                {
                    selected.extend(add);
                }
            }
            if selected.len() == before {
                break;
            }
        }
    } else {
        selected.extend(&roots);
    }

    let mut warnings = Vec::new();
    if selecting {
        // A named table that cannot come is an error: the user asked for it.
        let mut missing_named: Vec<String> = Vec::new();
        for id in &named {
            if !selected.contains(id) {
                let entry = toc.get(*id).expect("named from the TOC");
                let blocked = toc.satisfy(*id, &selected).err().unwrap_or_default();
                missing_named.push(format!(
                    "`{}.{}` needs {} (inheritance, a column of its type, or a view's source)",
                    entry.namespace,
                    entry.tag,
                    toc.relation_names(&blocked).join(", ")
                ));
            }
        }
        if !missing_named.is_empty() {
            missing_named.sort();
            return Err(Error::new(
                ErrorCode::UserErrorInvalidRestoreOption,
                format!(
                    "--tables: {}; add them to --tables (or --schemas) to restore it",
                    missing_named.join("; ")
                ),
            ));
        }
        // What is left out: roots of --schemas that need something outside, and dependents
        // of selected tables that need a table left out (a foreign key to it).
        let kept_relations: Vec<&TocEntry> = toc
            .entries
            .iter()
            .filter(|e| selected.contains(&e.dump_id) && is(e, RELATIONS))
            .collect();
        for e in toc.entries {
            if selected.contains(&e.dump_id) || toc.excluded.contains(&e.dump_id) {
                continue;
            }
            let is_root = roots.contains(&e.dump_id) && !is(e, SESSION_SETTINGS);
            let belongs = toc.attached(e, &selected, req.with_dependents)
                && e.dependencies
                    .iter()
                    .filter_map(|d| toc.get(*d))
                    .any(|d| selected.contains(&d.dump_id) && is(d, RELATIONS));
            if !(is_root || belongs) {
                continue;
            }
            let blocked = toc.satisfy(e.dump_id, &selected).err().unwrap_or_default();
            if blocked.is_empty() {
                continue;
            }
            // A foreign key belongs to the table it is on (its tag starts with that table's
            // name); one on a table that is not restored is no loss to speak of.
            if e.desc == "FK CONSTRAINT"
                && !kept_relations.iter().any(|t| {
                    t.namespace == e.namespace
                        && e.tag
                            .strip_prefix(t.tag.as_str())
                            .is_some_and(|rest| rest.starts_with(' '))
                })
            {
                continue;
            }
            let what = if e.desc == "FK CONSTRAINT" {
                format!(
                    "foreign key {}.{} was left out: it references {}, which this restore does not include (add it to --tables to keep the key)",
                    e.namespace,
                    e.tag,
                    toc.relation_names(&blocked).join(", ")
                )
            } else {
                format!(
                    "{} was left out: it needs {}, which this restore does not include",
                    describe(e),
                    toc.relation_names(&blocked).join(", ")
                )
            };
            warnings.push(what);
        }
    }

    let list = toc
        .entries
        .iter()
        .filter(|e| selected.contains(&e.dump_id))
        .map(list_line)
        .collect();
    Ok(Plan {
        ids: selected,
        list,
        warnings,
    })
}

/// One line of a `--use-list` file: the dumpId, then (after `;`, a comment to pg_restore) what
/// `pg_restore -l` shows, on one line whatever the names hold.
pub(crate) fn list_line(e: &TocEntry) -> String {
    let comment = format!(
        "{} {} {} {} {} {}",
        e.table_oid, e.oid, e.desc, e.namespace, e.tag, e.owner
    )
    .replace(['\n', '\r'], " ");
    format!("{}; {comment}\n", e.dump_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::archive::ArchiveHeader;

    /// The table of contents pg_dump 15 writes for `support::owned_database` (with comments on
    /// `rental`), as `pg_restore -l` lists it: dumpId, desc, namespace, tag, dependencies.
    fn owned_database() -> ArchiveSummary {
        toc(&[
            (3380, "ENCODING", "", "ENCODING", &[]),
            (6, "SCHEMA", "", "inventory", &[]),
            (3384, "ACL", "", "SCHEMA inventory", &[6]),
            (5, "SCHEMA", "", "public", &[]),
            (222, "FUNCTION", "public", "touch_last_update()", &[5]),
            (221, "TABLE", "inventory", "film", &[6]),
            (3385, "ACL", "inventory", "TABLE film", &[221]),
            (220, "SEQUENCE", "inventory", "film_film_id_seq", &[6, 221]),
            (
                3386,
                "SEQUENCE OWNED BY",
                "inventory",
                "film_film_id_seq",
                &[220],
            ),
            (216, "TABLE", "public", "customer", &[5]),
            (3387, "ACL", "public", "TABLE customer", &[216]),
            (
                215,
                "SEQUENCE",
                "public",
                "customer_customer_id_seq",
                &[5, 216],
            ),
            (
                3388,
                "SEQUENCE OWNED BY",
                "public",
                "customer_customer_id_seq",
                &[215],
            ),
            (218, "TABLE", "public", "rental", &[5]),
            (3389, "COMMENT", "public", "TABLE rental", &[218]),
            (3390, "COMMENT", "public", "COLUMN rental.returned", &[218]),
            (3391, "ACL", "public", "TABLE rental", &[218]),
            (219, "VIEW", "public", "open_rentals", &[218, 218, 5]),
            (3392, "ACL", "public", "TABLE open_rentals", &[219]),
            (217, "SEQUENCE", "public", "rental_rental_id_seq", &[218, 5]),
            (
                3216,
                "DEFAULT",
                "inventory",
                "film film_id",
                &[221, 220, 221],
            ),
            (
                3213,
                "DEFAULT",
                "public",
                "customer customer_id",
                &[216, 215, 216],
            ),
            (3377, "TABLE DATA", "inventory", "film", &[221]),
            (3373, "TABLE DATA", "public", "customer", &[216]),
            (3375, "TABLE DATA", "public", "rental", &[218]),
            (
                3393,
                "SEQUENCE SET",
                "inventory",
                "film_film_id_seq",
                &[220],
            ),
            (
                3394,
                "SEQUENCE SET",
                "public",
                "customer_customer_id_seq",
                &[215],
            ),
            (
                3395,
                "SEQUENCE SET",
                "public",
                "rental_rental_id_seq",
                &[217],
            ),
            (3226, "CONSTRAINT", "inventory", "film film_pkey", &[221]),
            (
                3219,
                "CONSTRAINT",
                "public",
                "customer customer_email_key",
                &[216],
            ),
            (
                3221,
                "CONSTRAINT",
                "public",
                "customer customer_pkey",
                &[216],
            ),
            (3224, "CONSTRAINT", "public", "rental rental_pkey", &[218]),
            (3222, "INDEX", "public", "rental_customer_idx", &[218]),
            (
                3228,
                "TRIGGER",
                "public",
                "rental rental_touch",
                &[222, 218],
            ),
            (
                3227,
                "FK CONSTRAINT",
                "public",
                "rental rental_customer_id_fkey",
                &[216, 3221, 218],
            ),
        ])
    }

    fn toc(rows: &[(i32, &str, &str, &str, &[i32])]) -> ArchiveSummary {
        ArchiveSummary {
            header: ArchiveHeader::default(),
            entries: rows
                .iter()
                .map(|(id, desc, ns, tag, deps)| TocEntry {
                    dump_id: *id,
                    desc: desc.to_string(),
                    namespace: ns.to_string(),
                    tag: tag.to_string(),
                    owner: "appowner".into(),
                    dependencies: deps.to_vec(),
                    had_dumper: *desc == "TABLE DATA",
                    ..TocEntry::default()
                })
                .collect(),
            toc_end: 0,
            stream_len: 0,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn planned(archive: &ArchiveSummary, tables: &[&str], schemas: &[&str]) -> Plan {
        plan(
            archive,
            &Request {
                tables: &strings(tables),
                schemas: &strings(schemas),
                exclude_tables: &[],
                with_dependents: true,
            },
        )
        .unwrap()
    }

    fn ids(plan: &Plan) -> Vec<i32> {
        let mut ids: Vec<i32> = plan.ids.iter().copied().collect();
        ids.sort();
        ids
    }

    fn sorted(mut v: Vec<i32>) -> Vec<i32> {
        v.sort();
        v
    }

    #[test]
    fn a_table_comes_with_its_identity_sequence_keys_indexes_triggers_and_what_they_need() {
        let archive = owned_database();
        let plan = planned(&archive, &["public.rental"], &[]);
        assert_eq!(
            ids(&plan),
            sorted(vec![
                3380, 5, 222, 218, 3389, 3390, 3391, 217, 3375, 3395, 3224, 3222, 3228
            ]),
            "the table, its schema, the trigger's function, its identity sequence and value, \
             data, comments, grant, key, index and trigger; not the view, not customer"
        );
        // The foreign key to customer cannot come without customer: left out, said so.
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(
            plan.warnings[0].contains("rental rental_customer_id_fkey")
                && plan.warnings[0].contains("public.customer")
                && !plan.warnings[0].contains("CONSTRAINT public.customer"),
            "{}",
            plan.warnings[0]
        );
        // The list is in archive order: pg_restore restores in list order.
        let listed: Vec<i32> = plan
            .list
            .lines()
            .map(|l| l.split(';').next().unwrap().parse().unwrap())
            .collect();
        let order: Vec<i32> = archive
            .entries
            .iter()
            .map(|e| e.dump_id)
            .filter(|id| plan.ids.contains(id))
            .collect();
        assert_eq!(listed, order);
    }

    #[test]
    fn a_serial_sequence_comes_with_its_table_and_a_foreign_key_from_a_table_left_out_is_no_loss() {
        let plan = planned(&owned_database(), &["customer"], &[]);
        assert_eq!(
            ids(&plan),
            sorted(vec![
                3380, 5, 216, 3387, 215, 3388, 3213, 3373, 3394, 3219, 3221
            ])
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn a_foreign_key_comes_when_both_tables_do() {
        let plan = planned(
            &owned_database(),
            &["public.rental", "public.customer"],
            &[],
        );
        assert!(plan.ids.contains(&3227));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert!(!plan.ids.contains(&219), "not the view");
    }

    #[test]
    fn without_dependents_a_table_keeps_its_sequences_defaults_data_comments_and_grants() {
        let plan = plan(
            &owned_database(),
            &Request {
                tables: &strings(&["public.rental", "customer"]),
                with_dependents: false,
                ..Request::default()
            },
        )
        .unwrap();
        assert_eq!(
            ids(&plan),
            sorted(vec![
                3380, 5, 216, 3387, 215, 3388, 218, 3389, 3390, 3391, 217, 3213, 3373, 3375, 3394,
                3395
            ])
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn a_schema_comes_whole_with_its_privileges() {
        let plan = planned(&owned_database(), &[], &["inventory"]);
        assert_eq!(
            ids(&plan),
            sorted(vec![
                3380, 6, 3384, 221, 3385, 220, 3386, 3216, 3377, 3393, 3226
            ])
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // With a table of another schema: both.
        let plan = planned(&owned_database(), &["public.customer"], &["inventory"]);
        assert!(plan.ids.contains(&221) && plan.ids.contains(&216));
    }

    #[test]
    fn a_schema_whose_key_points_outside_restores_without_it_and_says_so() {
        let plan = planned(&owned_database(), &[], &["public"]);
        // Everything in public restores: rental and customer and the key between them.
        assert!(plan.ids.contains(&3227) && plan.ids.contains(&219));
        assert!(plan.warnings.is_empty());
        // A table in public whose key references inventory.film.
        let mut archive = owned_database();
        archive.entries.push(TocEntry {
            dump_id: 4000,
            desc: "FK CONSTRAINT".into(),
            namespace: "public".into(),
            tag: "rental rental_film_fkey".into(),
            dependencies: vec![221, 3226, 218],
            ..TocEntry::default()
        });
        let plan = planned(&archive, &[], &["public"]);
        assert!(!plan.ids.contains(&4000));
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(
            plan.warnings[0].contains("inventory.film"),
            "{}",
            plan.warnings[0]
        );
    }

    #[test]
    fn a_default_drawing_from_another_tables_sequence_brings_the_sequence_and_its_value() {
        let mut archive = owned_database();
        // film's id default draws from customer's serial sequence.
        let default = archive
            .entries
            .iter_mut()
            .find(|e| e.dump_id == 3216)
            .unwrap();
        default.dependencies = vec![221, 215, 221];
        let plan = planned(&archive, &["inventory.film"], &[]);
        for id in [215, 3394, 221, 3216] {
            assert!(plan.ids.contains(&id), "{id}");
        }
        // Not customer itself, nor the OWNED BY that names its column.
        assert!(!plan.ids.contains(&216) && !plan.ids.contains(&3388));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn what_cannot_be_restored_as_asked_is_refused_with_what_to_add() {
        let archive = owned_database();
        let refuse = |tables: &[&str], schemas: &[&str]| {
            plan(
                &archive,
                &Request {
                    tables: &strings(tables),
                    schemas: &strings(schemas),
                    with_dependents: true,
                    ..Request::default()
                },
            )
            .unwrap_err()
        };
        let e = refuse(&["public.open_rentals"], &[]);
        assert!(
            e.message.contains("public.open_rentals") && e.message.contains("public.rental"),
            "{}",
            e.message
        );
        // With the table, the view comes.
        let plan = planned(&archive, &["open_rentals", "rental"], &[]);
        assert!(plan.ids.contains(&219) && plan.ids.contains(&3392));
        let e = refuse(&["public.nothing"], &[]);
        assert_eq!(e.code.as_str(), "UserErrorTableNotFound");
        let e = refuse(&[], &["nowhere"]);
        assert_eq!(e.code.as_str(), "UserErrorSchemaNotFound");
    }

    #[test]
    fn exclusions_take_the_table_and_what_depends_on_it() {
        let plan = plan(
            &owned_database(),
            &Request {
                exclude_tables: &strings(&["public.rental"]),
                with_dependents: true,
                ..Request::default()
            },
        )
        .unwrap();
        for gone in [218, 219, 3227, 3228, 3375, 217, 3395] {
            assert!(!plan.ids.contains(&gone), "{gone}");
        }
        assert!(plan.ids.contains(&216) && plan.ids.contains(&221));
        let plan = plan_with_exclusion();
        assert_eq!(
            ids(&plan),
            sorted(vec![
                3380, 5, 216, 3387, 215, 3388, 3213, 3373, 3394, 3219, 3221
            ])
        );
    }

    fn plan_with_exclusion() -> Plan {
        plan(
            &owned_database(),
            &Request {
                tables: &strings(&["customer", "rental"]),
                exclude_tables: &strings(&["rental"]),
                with_dependents: true,
                ..Request::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_list_line_stays_one_line() {
        let e = TocEntry {
            dump_id: 7,
            desc: "TABLE".into(),
            namespace: "public".into(),
            tag: "odd\nname".into(),
            ..TocEntry::default()
        };
        let line = list_line(&e);
        assert_eq!(line.lines().count(), 1);
        assert!(line.starts_with("7; "));
    }
}
