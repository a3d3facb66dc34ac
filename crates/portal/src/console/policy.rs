//! Backup policies, the portal's policy blade: every vault's policies with their schedule and
//! retention at a glance, one policy with its ten-year timeline, and the editor that creates
//! one (schedule days and time, time zone, retention rules for the vault and archive tiers
//! with their copy options, tags and their criteria).
//!
//! The editor is a form whose fields are the az CLI's edit steps: [`build`] turns a [`Draft`]
//! into a policy through `pgvault_model::policy_edit` (the same functions `backup-policy
//! trigger | retention-rule | tag` run), then [`BackupPolicy::validate`]; each error is shown
//! at the field it is about (a validation error's JSON path is mapped back to the field that
//! wrote it). The ten-year simulation is `pgvault_model::simulate` drawn by
//! `pgvault_model::plot`, the picture `backup-policy simulate --plot` writes. The page works
//! without JavaScript (a Redraw button posts the form back); with it, a few lines post the
//! form to `/policies/preview` as it changes and put the new plot and field errors in place.
//!
//! Azure does not update a PostgreSQL policy in place (`UserErrorBMSUpdatePolicyNotSupported`),
//! so "edit" on a stored policy opens the editor filled from it, to be saved under a new name.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::json;

use pgvault_host::access::{AuditEntry, Role};
use pgvault_model::duration::{DurationUnit, IsoDuration};
use pgvault_model::policy::{
    AbsoluteMarker, BackupPolicy, CopyOption, DataStoreType, DatasourceType, PolicyRule, Trigger,
};
use pgvault_model::policy_edit::{self, CopyOptionKind};
use pgvault_model::templates::default_policy_template;

use super::session::Session;
use super::{SignedIn, frame, problem, seg, signed_in_post};
use crate::Portal;

/// The retention rules the editor offers, in the order it shows them (and adds their tags).
const RULES: [&str; 5] = ["Default", "Daily", "Weekly", "Monthly", "Yearly"];
const UNITS: [&str; 4] = ["Days", "Weeks", "Months", "Years"];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
/// A Sunday: a weekly interval repeats on its start's weekday, so day `i` of [`DAYS`] starts
/// `i` days after it (the template's date).
const REFERENCE_SUNDAY: (i32, u32, u32) = (2021, 8, 15);
/// How many years the editor and the policy page simulate.
const SIMULATED_YEARS: u32 = 10;

/// One retention rule of the form. Counts are kept as typed, so a bad one is shown back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDraft {
    pub on: bool,
    pub keep: String,
    pub unit: String,
    /// `none` or a copy option's `objectType`.
    pub archive: String,
    pub copy_after: String,
    pub copy_unit: String,
    pub archive_keep: String,
    pub archive_unit: String,
    /// An absolute marker (`FirstOfMonth`...) or `Days` for the lists below.
    pub criterion: String,
    pub days_of_week: String,
    pub weeks_of_month: String,
    pub months: String,
    pub days_of_month: String,
}

impl RuleDraft {
    fn new(rule: &str) -> RuleDraft {
        let (keep, unit, criterion) = match rule {
            "Daily" => ("7", "Days", "FirstOfDay"),
            "Weekly" => ("12", "Weeks", "FirstOfWeek"),
            "Monthly" => ("12", "Months", "FirstOfMonth"),
            "Yearly" => ("10", "Years", "FirstOfYear"),
            _ => ("3", "Months", ""),
        };
        RuleDraft {
            on: rule == "Default",
            keep: keep.into(),
            unit: unit.into(),
            archive: "none".into(),
            copy_after: "1".into(),
            copy_unit: "Months".into(),
            archive_keep: "1".into(),
            archive_unit: "Years".into(),
            criterion: criterion.into(),
            days_of_week: String::new(),
            weeks_of_month: String::new(),
            months: String::new(),
            days_of_month: String::new(),
        }
    }
}

/// The editor's form, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub vault: String,
    pub name: String,
    /// `Weekly`, `Daily` or `Hourly`.
    pub frequency: String,
    /// Hours between hourly backups: 4, 6, 8 or 12.
    pub hours: String,
    pub days: Vec<String>,
    /// `HH:MM`, in the time zone.
    pub time: String,
    pub timezone: String,
    /// One per name of [`RULES`].
    pub rules: BTreeMap<String, RuleDraft>,
}

impl Draft {
    /// The default template's policy: weekly on Sunday at 06:30 UTC, kept three months.
    pub fn template(vault: &str) -> Draft {
        Draft {
            vault: vault.to_owned(),
            name: String::new(),
            frequency: "Weekly".into(),
            hours: "4".into(),
            days: vec!["Sunday".into()],
            time: "06:30".into(),
            timezone: "UTC".into(),
            rules: RULES
                .iter()
                .map(|r| (r.to_string(), RuleDraft::new(r)))
                .collect(),
        }
    }

    /// The form as a posted body gives it (fields it lacks keep the template's values, except
    /// checkboxes, which a browser leaves out when unticked).
    pub fn from_form(form: &[(String, String)]) -> Draft {
        let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let mut draft = Draft::template(&get("vault").unwrap_or_default());
        let set = |field: &mut String, key: &str| {
            if let Some(v) = get(key) {
                *field = v;
            }
        };
        set(&mut draft.name, "name");
        set(&mut draft.frequency, "frequency");
        set(&mut draft.hours, "hours");
        set(&mut draft.time, "time");
        set(&mut draft.timezone, "timezone");
        draft.days = form
            .iter()
            .filter(|(k, _)| k == "day")
            .map(|(_, v)| v.clone())
            .collect();
        for (name, rule) in draft.rules.iter_mut() {
            let key = |field: &str| format!("{name}.{field}");
            rule.on = name == "Default" || get(&key("on")).is_some();
            set(&mut rule.keep, &key("keep"));
            set(&mut rule.unit, &key("unit"));
            set(&mut rule.archive, &key("archive"));
            set(&mut rule.copy_after, &key("copy_after"));
            set(&mut rule.copy_unit, &key("copy_unit"));
            set(&mut rule.archive_keep, &key("archive_keep"));
            set(&mut rule.archive_unit, &key("archive_unit"));
            set(&mut rule.criterion, &key("criterion"));
            set(&mut rule.days_of_week, &key("days_of_week"));
            set(&mut rule.weeks_of_month, &key("weeks_of_month"));
            set(&mut rule.months, &key("months"));
            set(&mut rule.days_of_month, &key("days_of_month"));
        }
        draft
    }

    /// The form filled from a stored policy, as far as the form can say it: the first
    /// interval's time, every weekly interval's day, each known rule's lifecycles and its
    /// tag's first criterion.
    pub fn from_policy(vault: &str, policy: &BackupPolicy) -> Draft {
        let mut draft = Draft::template(vault);
        if let Some(rule) = policy.backup_rule()
            && let Trigger::Schedule(trigger) = &rule.trigger
        {
            draft.timezone = trigger.schedule.time_zone.clone().unwrap_or_default();
            let mut days = Vec::new();
            for (i, interval) in trigger.schedule.repeating_time_intervals.iter().enumerate() {
                let mut parts = interval.split('/').skip(1);
                let (Some(start), Some(period)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if i == 0 {
                    draft.frequency = match period {
                        "P1D" => "Daily".into(),
                        p if p.starts_with("PT") => {
                            draft.hours = p.trim_start_matches("PT").trim_end_matches('H').into();
                            "Hourly".into()
                        }
                        _ => "Weekly".into(),
                    };
                    if let Some(t) = start.get(11..16) {
                        draft.time = t.to_owned();
                    }
                }
                if let Some(date) = start.get(..10).and_then(|d| d.parse::<NaiveDate>().ok()) {
                    let day = DAYS[date.weekday().num_days_from_sunday() as usize];
                    if !days.iter().any(|d| d == day) {
                        days.push(day.to_owned());
                    }
                }
            }
            if !days.is_empty() {
                draft.days = days;
            }
            for tag in &trigger.tagging_criteria {
                let Some(rule) = draft.rules.get_mut(tag.tag_info.tag_name.as_str()) else {
                    continue;
                };
                let Some(c) = tag.criteria.first() else {
                    continue;
                };
                let join = |items: Vec<String>| items.join(", ");
                if let Some(marker) = c.absolute_criteria.first() {
                    rule.criterion = marker.to_string();
                } else {
                    rule.criterion = "Days".into();
                    rule.days_of_week =
                        join(c.days_of_the_week.iter().map(|d| d.to_string()).collect());
                    rule.weeks_of_month =
                        join(c.weeks_of_the_month.iter().map(|d| d.to_string()).collect());
                    rule.months = join(c.months_of_year.iter().map(|d| d.to_string()).collect());
                    rule.days_of_month = join(
                        c.days_of_month
                            .iter()
                            .map(|d| match d {
                                pgvault_model::policy::DayOfMonth::Date(n) => n.to_string(),
                                pgvault_model::policy::DayOfMonth::Last => "Last".into(),
                            })
                            .collect(),
                    );
                }
            }
        }
        for retention in policy.retention_rules() {
            let Some(rule) = draft.rules.get_mut(retention.name.as_str()) else {
                continue;
            };
            rule.on = true;
            if let Some(vault) = retention.lifecycle(DataStoreType::VaultStore) {
                (rule.keep, rule.unit) = count_and_unit(&vault.delete_after.duration);
                if let Some(copy) = vault.target_data_store_copy_settings.first() {
                    rule.archive = match &copy.copy_after {
                        CopyOption::CopyOnExpiry => CopyOptionKind::CopyOnExpiry.as_str().into(),
                        CopyOption::Immediate => CopyOptionKind::Immediate.as_str().into(),
                        CopyOption::Custom(c) => {
                            (rule.copy_after, rule.copy_unit) = count_and_unit(&c.duration);
                            CopyOptionKind::Custom.as_str().into()
                        }
                    };
                }
            }
            if let Some(archive) = retention.lifecycle(DataStoreType::ArchiveStore) {
                (rule.archive_keep, rule.archive_unit) =
                    count_and_unit(&archive.delete_after.duration);
            }
        }
        draft
    }
}

/// A duration as the form's count and unit (its largest part; the form writes one unit).
fn count_and_unit(d: &IsoDuration) -> (String, String) {
    let (n, unit) = if d.year_part() > 0 {
        (d.year_part(), "Years")
    } else if d.month_part() > 0 {
        (d.month_part(), "Months")
    } else if d.week_part() > 0 {
        (d.week_part(), "Weeks")
    } else {
        (d.day_part(), "Days")
    };
    (n.to_string(), unit.to_owned())
}

/// Errors by form field (`name`, `days`, `time`, `timezone`, `schedule`, `Monthly.keep`...);
/// `policy` for those no one field owns.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

fn push(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(message.into());
}

fn count(text: &str, what: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{what} must be a whole number above 0, not {text:?}"
        )),
    }
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The draft as a policy, through the az CLI's edits, then validated; or the errors at their
/// fields. The name is checked too (when `check_name`), as creation needs one.
pub fn build(draft: &Draft, check_name: bool) -> Result<BackupPolicy, FieldErrors> {
    let mut errors = FieldErrors::new();
    if check_name && draft.name.trim().is_empty() {
        push(&mut errors, "name", "give the policy a name");
    }
    let mut policy =
        default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer);
    policy.name = None;

    // The schedule: one repeating interval per day (weekly) or one (daily, hourly). In UTC the
    // az CLI's `+00:00` form; in another zone no offset, so the time is that zone's wall clock.
    let time = NaiveTime::parse_from_str(draft.time.trim(), "%H:%M");
    if time.is_err() {
        push(
            &mut errors,
            "time",
            format!(
                "{:?} is not a time; write it as HH:MM, such as 22:00",
                draft.time
            ),
        );
    }
    let zone = draft.timezone.trim();
    if let Err(e) = pgvault_model::schedule::parse_time_zone(Some(zone)) {
        push(&mut errors, "timezone", e.to_string());
    }
    let period = match draft.frequency.as_str() {
        "Weekly" => Some("P1W".to_owned()),
        "Daily" => Some("P1D".to_owned()),
        "Hourly" => match draft.hours.trim().parse::<u32>() {
            Ok(n @ (4 | 6 | 8 | 12)) => Some(format!("PT{n}H")),
            _ => {
                push(
                    &mut errors,
                    "hours",
                    "hourly backups repeat every 4, 6, 8 or 12 hours",
                );
                None
            }
        },
        other => {
            push(
                &mut errors,
                "frequency",
                format!("{other:?} is not a frequency; use Weekly, Daily or Hourly"),
            );
            None
        }
    };
    let days: Vec<usize> = if draft.frequency == "Weekly" {
        let days: Vec<usize> = DAYS
            .iter()
            .enumerate()
            .filter(|(_, d)| draft.days.iter().any(|x| x == *d))
            .map(|(i, _)| i)
            .collect();
        if days.is_empty() {
            push(
                &mut errors,
                "days",
                "pick at least one day for weekly backups",
            );
        }
        days
    } else {
        vec![0]
    };
    if let (Ok(time), Some(period)) = (time, period) {
        let (y, m, d) = REFERENCE_SUNDAY;
        let offset = if zone.is_empty() || zone.eq_ignore_ascii_case("UTC") {
            "+00:00"
        } else {
            ""
        };
        let intervals: Vec<String> = days
            .iter()
            .filter_map(|i| NaiveDate::from_ymd_opt(y, m, d + *i as u32))
            .map(|date| {
                format!(
                    "R/{}T{}{offset}/{period}",
                    date.format("%Y-%m-%d"),
                    time.format("%H:%M:%S")
                )
            })
            .collect();
        if !intervals.is_empty()
            && let Err(e) = policy_edit::set_trigger(&mut policy, intervals)
        {
            push(&mut errors, "schedule", e.to_string());
        }
    }
    if let Some(PolicyRule::Backup(rule)) = policy.policy_rules.first_mut()
        && let Trigger::Schedule(trigger) = &mut rule.trigger
    {
        trigger.schedule.time_zone = Some(if zone.is_empty() {
            "UTC".to_owned()
        } else {
            zone.to_owned()
        });
    }

    // The retention rules and their tags.
    for name in RULES {
        let Some(rule) = draft.rules.get(name) else {
            continue;
        };
        if !rule.on {
            continue;
        }
        let field = |f: &str| format!("{name}.{f}");
        let mut ok = true;
        let unit =
            |text: &str, f: &str, errors: &mut FieldErrors| match text.parse::<DurationUnit>() {
                Ok(u) => Some(u),
                Err(_) => {
                    push(
                        errors,
                        &field(f),
                        format!("{text:?} is not a unit; use Days, Weeks, Months or Years"),
                    );
                    None
                }
            };
        let keep = count(&rule.keep, "the retention")
            .map_err(|e| push(&mut errors, &field("keep"), e))
            .ok();
        let keep_unit = unit(&rule.unit, "keep", &mut errors);
        let copy = match rule.archive.as_str() {
            "" | "none" => None,
            option => match option.parse::<CopyOptionKind>() {
                Ok(kind) => Some(kind),
                Err(e) => {
                    push(&mut errors, &field("archive"), e.to_string());
                    ok = false;
                    None
                }
            },
        };
        let custom = match copy {
            Some(CopyOptionKind::Custom) => {
                let n = count(&rule.copy_after, "the copy delay")
                    .map_err(|e| push(&mut errors, &field("copy_after"), e))
                    .ok();
                let u = unit(&rule.copy_unit, "copy_after", &mut errors);
                match (n, u) {
                    (Some(n), Some(u)) => Some(IsoDuration::from_count(n, u)),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            _ => None,
        };
        let (Some(keep), Some(keep_unit)) = (keep, keep_unit) else {
            continue;
        };
        if !ok {
            continue;
        }
        let target = copy.map(|_| DataStoreType::ArchiveStore);
        let mut lifecycles = match policy_edit::create_lifecycle(
            DataStoreType::VaultStore,
            keep,
            keep_unit,
            target,
            copy,
            custom,
        ) {
            Ok(l) => vec![l],
            Err(e) => {
                push(&mut errors, &field("archive"), e.to_string());
                continue;
            }
        };
        if copy.is_some() {
            let n = count(&rule.archive_keep, "the archive retention")
                .map_err(|e| push(&mut errors, &field("archive_keep"), e))
                .ok();
            let u = unit(&rule.archive_unit, "archive_keep", &mut errors);
            let (Some(n), Some(u)) = (n, u) else { continue };
            match policy_edit::create_lifecycle(DataStoreType::ArchiveStore, n, u, None, None, None)
            {
                Ok(l) => lifecycles.push(l),
                Err(e) => {
                    push(&mut errors, &field("archive_keep"), e.to_string());
                    continue;
                }
            }
        }
        if let Err(e) = policy_edit::set_retention_rule(&mut policy, name, lifecycles) {
            push(&mut errors, &field("keep"), e.to_string());
            continue;
        }
        if name == "Default" {
            continue;
        }
        let criterion = match rule.criterion.parse::<AbsoluteMarker>() {
            Ok(marker) => Ok(policy_edit::absolute_criteria(marker)),
            Err(_) if rule.criterion == "Days" => policy_edit::generic_criteria(
                &comma_list(&rule.days_of_week),
                &comma_list(&rule.weeks_of_month),
                &comma_list(&rule.months),
                &comma_list(&rule.days_of_month),
            )
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match criterion.and_then(|c| {
            policy_edit::set_tag(&mut policy, name, vec![c]).map_err(|e| e.to_string())
        }) {
            Ok(()) => {}
            Err(e) => push(&mut errors, &field("criterion"), e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Err(problems) = policy.validate() {
        for e in problems {
            let message = e.to_string();
            let message = message
                .strip_prefix(&format!("{}: ", e.path()))
                .unwrap_or(&message);
            push(&mut errors, &field_of(&policy, e.path()), message);
        }
        return Err(errors);
    }
    Ok(policy)
}

/// The form field that wrote what a validation error's JSON path names.
fn field_of(policy: &BackupPolicy, path: &str) -> String {
    let index = path
        .strip_prefix("policyRules[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    match index.and_then(|i| policy.policy_rules.get(i)) {
        Some(PolicyRule::Retention(rule)) => {
            let f = if path.contains("targetDataStoreCopySettings") {
                "archive"
            } else if path.contains("lifecycles[1]") {
                "archive_keep"
            } else {
                "keep"
            };
            format!("{}.{f}", rule.name)
        }
        Some(PolicyRule::Backup(rule)) => {
            if path.contains("timeZone") {
                return "timezone".into();
            }
            if let Some(tag) = path
                .split("taggingCriteria[")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .and_then(|j| j.parse::<usize>().ok())
                && let Trigger::Schedule(trigger) = &rule.trigger
                && let Some(tag) = trigger.tagging_criteria.get(tag)
            {
                return format!("{}.criterion", tag.tag_info.tag_name);
            }
            "schedule".into()
        }
        None => "policy".into(),
    }
}

/// The ten-year plot of a policy from `start`'s day, judged at the end of the window; or why
/// it cannot be drawn.
pub fn timeline(policy: &BackupPolicy, start: DateTime<Utc>) -> Result<String, String> {
    let from = start.date_naive().and_time(NaiveTime::MIN).and_utc();
    let to = from
        .checked_add_months(Months::new(12 * SIMULATED_YEARS))
        .ok_or_else(|| "the simulation window ends past the calendar's end".to_owned())?;
    pgvault_model::simulate::simulate(policy, from, to, to)
        .map(|sim| pgvault_model::plot::render_svg(&sim))
        .map_err(|e| e.to_string())
}

/// The plot as it goes into the page: the SVG inline (its document prologue dropped).
fn plot_markup(svg: &Result<String, String>) -> Markup {
    match svg {
        Ok(svg) => {
            let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
            html! { figure.plot role="img" aria-label={"Ten-year simulation of the policy"} { (PreEscaped(body)) } }
        }
        Err(e) => html! { p.quiet { "No timeline: " (e) } },
    }
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

async fn vault_names(portal: &Portal) -> Vec<String> {
    portal
        .svc
        .vaults_json(None)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// A stored policy, parsed; `None` for one this version cannot read as a policy.
fn parse_stored(value: &serde_json::Value) -> Option<BackupPolicy> {
    BackupPolicy::parse_value(value.get("properties")?.clone()).ok()
}

fn schedule_words(d: &Draft) -> String {
    let zone = if d.timezone.is_empty() {
        "UTC"
    } else {
        d.timezone.as_str()
    };
    match d.frequency.as_str() {
        "Weekly" => format!("Weekly on {} at {} ({zone})", d.days.join(", "), d.time),
        "Daily" => format!("Daily at {} ({zone})", d.time),
        _ => format!("Every {} hours from {} ({zone})", d.hours, d.time),
    }
}

fn retention_words(d: &Draft) -> Vec<String> {
    RULES
        .iter()
        .filter_map(|name| {
            let r = d.rules.get(*name).filter(|r| r.on)?;
            let mut text = format!("{name}: {} {} in the vault", r.keep, r.unit.to_lowercase());
            if r.archive != "none" {
                text.push_str(&format!(
                    ", then {} {} in the archive",
                    r.archive_keep,
                    r.archive_unit.to_lowercase()
                ));
            }
            Some(text)
        })
        .collect()
}

/// `GET /policies`: every vault's policies.
pub async fn list(State(portal): State<Arc<Portal>>, SignedIn(session): SignedIn) -> Response {
    let mut rows = Vec::new();
    for vault in vault_names(&portal).await {
        if let Ok((policies, _)) = portal.svc.policies_json(&vault).await {
            for p in policies {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                let draft = parse_stored(&p).map(|policy| Draft::from_policy(&vault, &policy));
                rows.push((vault.clone(), name, draft));
            }
        }
    }
    let content = html! {
        p { a href="/policies/new" { "Create a policy" } }
        @if rows.is_empty() {
            p { "No policy yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "Vault" } th scope="col" { "Policy" } th scope="col" { "Schedule" } th scope="col" { "Retention" } } }
                tbody {
                    @for (vault, name, draft) in &rows {
                        tr {
                            td { (vault) }
                            td { a href={"/vaults/" (seg(vault)) "/policies/" (seg(name))} { (name) } }
                            @if let Some(d) = draft {
                                td { (schedule_words(d)) }
                                td { @for line in retention_words(d) { (line) br; } }
                            } @else {
                                td colspan="2" { span.quiet { "not readable as a policy" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Html(frame("Backup policies", Some(&session), content).into_string()).into_response()
}

#[derive(Debug, Deserialize)]
pub struct PolicyPath {
    vault: String,
    name: String,
}

/// `GET /vaults/{vault}/policies/{name}`: one policy, its timeline and its JSON.
pub async fn show(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Path(p): Path<PolicyPath>,
) -> Response {
    let value = match portal.svc.policy_json(&p.vault, &p.name).await {
        Ok(v) => v,
        Err(e) => return super::error_page(&session, e),
    };
    let policy = parse_stored(&value);
    let draft = policy
        .as_ref()
        .map(|policy| Draft::from_policy(&p.vault, policy));
    let plot = match &policy {
        Some(policy) => timeline(policy, portal.svc.now()),
        None => Err("the stored policy is not readable as a policy".to_owned()),
    };
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    let content = html! {
        dl.facts {
            dt { "Vault" } dd { (p.vault) }
            @if let Some(d) = &draft {
                dt { "Schedule" } dd { (schedule_words(d)) }
                dt { "Retention" } dd { @for line in retention_words(d) { (line) br; } }
            }
        }
        p { a href={"/policies/new?vault=" (seg(&p.vault)) "&from=" (seg(&p.name))} { "Edit as a new policy" }
            span.quiet { " (Azure does not change a PostgreSQL policy in place: save the edit under a new name)" } }
        h2 { "Ten years of this policy" }
        (plot_markup(&plot))
        details { summary { "Policy JSON" } pre.output { (json) } }
    };
    Html(frame(&format!("Policy {}", p.name), Some(&session), content).into_string())
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
pub struct NewQuery {
    #[serde(default)]
    vault: String,
    #[serde(default)]
    from: String,
}

/// `GET /policies/new[?vault=V&from=P]`: the editor, filled from the default template or from
/// policy `P` of vault `V`.
pub async fn new(
    State(portal): State<Arc<Portal>>,
    SignedIn(session): SignedIn,
    Query(q): Query<NewQuery>,
) -> Response {
    let mut draft = Draft::template(&q.vault);
    if !q.from.is_empty() {
        match portal.svc.policy_json(&q.vault, &q.from).await {
            Ok(v) => {
                if let Some(policy) = parse_stored(&v) {
                    draft = Draft::from_policy(&q.vault, &policy);
                }
            }
            Err(e) => return super::error_page(&session, e),
        }
    }
    editor(
        &portal,
        &session,
        &draft,
        &FieldErrors::new(),
        None,
        StatusCode::OK,
    )
    .await
}

fn parse_form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /policies/new`: redraw (action `preview`) or create (action `create`, Contributor).
pub async fn submit(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let session = match signed_in_post(&portal, &headers, csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let draft = Draft::from_form(&form);
    let create = form.iter().any(|(k, v)| k == "action" && v == "create");
    if !create {
        let errors = build(&draft, false).err().unwrap_or_default();
        return editor(&portal, &session, &draft, &errors, None, StatusCode::OK).await;
    }
    if !session.caller.role.allows(Role::Contributor) {
        let refused = (
            "AuthorizationFailed".to_owned(),
            format!(
                "The token '{}' ({}) may not create policies; it needs the {} role.",
                session.caller.name,
                session.caller.role,
                Role::Contributor
            ),
        );
        return editor(
            &portal,
            &session,
            &draft,
            &FieldErrors::new(),
            Some(refused),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let policy = match build(&draft, true) {
        Ok(p) => p,
        Err(errors) => {
            return editor(
                &portal,
                &session,
                &draft,
                &errors,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let name = draft.name.trim();
    let result = portal.svc.create_policy(&draft.vault, name, &policy).await;
    let status = match &result {
        Ok(_) => StatusCode::SEE_OTHER,
        Err(e) => StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    let entry = AuditEntry {
        time: portal.svc.now(),
        token_name: session.caller.name.clone(),
        role: session.caller.role,
        method: "POST".into(),
        path: format!("/vaults/{}/policies/{}", seg(&draft.vault), seg(name)),
        status: status.as_u16(),
        job_id: None,
    };
    if let Err(e) = portal.svc.audit(&entry) {
        tracing::error!(error = %e, "could not write the API audit table");
    }
    match result {
        Ok(_) => Redirect::to(&format!(
            "/vaults/{}/policies/{}",
            seg(&draft.vault),
            seg(name)
        ))
        .into_response(),
        Err(e) => {
            let refused = (e.code.as_str().to_owned(), e.message);
            editor(
                &portal,
                &session,
                &draft,
                &FieldErrors::new(),
                Some(refused),
                status,
            )
            .await
        }
    }
}

/// `POST /policies/preview`: the plot and the field errors of a draft, as JSON, for the
/// editor's script.
pub async fn preview(
    State(portal): State<Arc<Portal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if let Err(r) = signed_in_post(&portal, &headers, csrf) {
        return match r {
            super::Refused::SignIn => StatusCode::UNAUTHORIZED.into_response(),
            super::Refused::Forgery => StatusCode::FORBIDDEN.into_response(),
        };
    }
    let draft = Draft::from_form(&form);
    let (plot, errors) = match build(&draft, false) {
        Ok(policy) => (
            plot_markup(&timeline(&policy, portal.svc.now())),
            FieldErrors::new(),
        ),
        Err(errors) => (stale_plot(), errors),
    };
    let errors: BTreeMap<String, String> =
        errors.into_iter().map(|(k, v)| (k, v.join(" "))).collect();
    Json(json!({"plot": plot.into_string(), "errors": errors})).into_response()
}

fn stale_plot() -> Markup {
    html! { p.quiet { "Fix the fields marked above to see the timeline." } }
}

/// A field's error, in place (an empty, hidden holder when it has none, for the script).
fn field_error(errors: &FieldErrors, field: &str) -> Markup {
    let text = errors.get(field).map(|m| m.join(" ")).unwrap_or_default();
    html! {
        span.field-error id={"error-" (field)} data-error-for=(field) role="alert" hidden[text.is_empty()] { (text) }
    }
}

fn invalid(errors: &FieldErrors, field: &str) -> Option<&'static str> {
    errors.contains_key(field).then_some("true")
}

fn unit_select(name: &str, label: &str, chosen: &str) -> Markup {
    html! {
        select name=(name) aria-label=(label) {
            @for u in UNITS { option value=(u) selected[u == chosen] { (u) } }
        }
    }
}

/// The editor page.
async fn editor(
    portal: &Portal,
    session: &Session,
    draft: &Draft,
    errors: &FieldErrors,
    refused: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    let vaults = vault_names(portal).await;
    let plot = match build(draft, false) {
        Ok(policy) => plot_markup(&timeline(&policy, portal.svc.now())),
        Err(_) => stale_plot(),
    };
    let content = html! {
        @if let Some((code, message)) = &refused { (problem(code, message)) }
        form #policy-form.card.policy-editor method="post" action="/policies/new" novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            (field_error(errors, "policy"))
            fieldset {
                legend { "Basics" }
                label for="vault" { "Vault" }
                select #vault name="vault" required {
                    @for v in &vaults { option value=(v) selected[*v == draft.vault] { (v) } }
                }
                label for="name" { "Policy name" }
                input #name name="name" value=(draft.name) required aria-invalid=[invalid(errors, "name")] aria-describedby="error-name";
                (field_error(errors, "name"))
            }
            fieldset {
                legend { "Schedule" }
                label for="frequency" { "Backup frequency" }
                select #frequency name="frequency" {
                    @for f in ["Weekly", "Daily", "Hourly"] { option value=(f) selected[f == draft.frequency] { (f) } }
                }
                (field_error(errors, "frequency"))
                fieldset.days.weekly-only aria-describedby="error-days" {
                    legend { "Days (weekly backups)" }
                    @for d in DAYS {
                        label.inline { input type="checkbox" name="day" value=(d) checked[draft.days.iter().any(|x| x == d)]; " " (d) }
                    }
                }
                (field_error(errors, "days"))
                div.hourly-only {
                    label for="hours" { "Every (hourly backups) " }
                    select #hours name="hours" aria-invalid=[invalid(errors, "hours")] {
                        @for h in ["4", "6", "8", "12"] { option value=(h) selected[h == draft.hours] { (h) " hours" } }
                    }
                }
                (field_error(errors, "hours"))
                label for="time" { "Time (HH:MM)" }
                input #time name="time" value=(draft.time) inputmode="numeric" pattern="[0-9]{2}:[0-9]{2}" aria-invalid=[invalid(errors, "time")] aria-describedby="error-time";
                (field_error(errors, "time"))
                label for="timezone" { "Time zone (IANA or Windows name)" }
                input #timezone name="timezone" value=(draft.timezone) aria-invalid=[invalid(errors, "timezone")] aria-describedby="error-timezone";
                (field_error(errors, "timezone"))
                (field_error(errors, "schedule"))
            }
            @for name in RULES {
                @let rule = draft.rules.get(name).cloned().unwrap_or_else(|| RuleDraft::new(name));
                @let f = |x: &str| format!("{name}.{x}");
                fieldset.rule {
                    legend {
                        @if name == "Default" { "Default retention (every backup)" }
                        @else { label.inline { input type="checkbox" name=(f("on")) value="on" checked[rule.on]; " " (name) " retention" } }
                    }
                    div.row {
                        label for=(f("keep")) { "Vault tier: keep for" }
                        input id=(f("keep")) name=(f("keep")) value=(rule.keep) size="4" inputmode="numeric" aria-invalid=[invalid(errors, &f("keep"))] aria-describedby={"error-" (f("keep"))};
                        (unit_select(&f("unit"), "Vault retention unit", &rule.unit))
                    }
                    (field_error(errors, &f("keep")))
                    div.row {
                        label for=(f("archive")) { "Archive tier" }
                        select id=(f("archive")) name=(f("archive")) aria-invalid=[invalid(errors, &f("archive"))] aria-describedby={"error-" (f("archive"))} {
                            option value="none" selected[rule.archive == "none"] { "No archive copy" }
                            option value="CopyOnExpiryOption" selected[rule.archive == "CopyOnExpiryOption"] { "Move on expiry" }
                            option value="ImmediateCopyOption" selected[rule.archive == "ImmediateCopyOption"] { "Copy immediately" }
                            option value="CustomCopyOption" selected[rule.archive == "CustomCopyOption"] { "Copy after…" }
                        }
                        span.custom-only {
                            span.quiet { "after " }
                            input name=(f("copy_after")) value=(rule.copy_after) size="4" aria-label={(name) " copy after"} aria-invalid=[invalid(errors, &f("copy_after"))] aria-describedby={"error-" (f("copy_after"))};
                            " "
                            (unit_select(&f("copy_unit"), "Copy delay unit", &rule.copy_unit))
                        }
                    }
                    (field_error(errors, &f("archive")))
                    (field_error(errors, &f("copy_after")))
                    div.row.archive-only {
                        label for=(f("archive_keep")) { "Archive tier: keep for" }
                        input id=(f("archive_keep")) name=(f("archive_keep")) value=(rule.archive_keep) size="4" aria-invalid=[invalid(errors, &f("archive_keep"))] aria-describedby={"error-" (f("archive_keep"))};
                        (unit_select(&f("archive_unit"), "Archive retention unit", &rule.archive_unit))
                    }
                    (field_error(errors, &f("archive_keep")))
                    @if name != "Default" {
                        div.row {
                            label for=(f("criterion")) { "Tag backups taken" }
                            select id=(f("criterion")) name=(f("criterion")) aria-invalid=[invalid(errors, &f("criterion"))] aria-describedby={"error-" (f("criterion"))} {
                                @for (v, text) in [("FirstOfDay", "first of each day"), ("FirstOfWeek", "first of each week"), ("FirstOfMonth", "first of each month"), ("FirstOfYear", "first of each year"), ("AllBackup", "every backup"), ("Days", "on these days…")] {
                                    option value=(v) selected[v == rule.criterion] { (text) }
                                }
                            }
                        }
                        details open[rule.criterion == "Days"] {
                            summary { "Days (comma-separated, Azure's names)" }
                            div.grid2 {
                                label { "Days of the week " input name=(f("days_of_week")) value=(rule.days_of_week) placeholder="Sunday"; }
                                label { "Weeks of the month " input name=(f("weeks_of_month")) value=(rule.weeks_of_month) placeholder="First, Last"; }
                                label { "Months " input name=(f("months")) value=(rule.months) placeholder="January, July"; }
                                label { "Days of the month " input name=(f("days_of_month")) value=(rule.days_of_month) placeholder="1, 15, Last"; }
                            }
                        }
                        (field_error(errors, &f("criterion")))
                    }
                }
            }
            div.actions {
                button type="submit" name="action" value="preview" { "Redraw the timeline" }
                button type="submit" name="action" value="create" { "Create policy" }
            }
        }
        h2 { "Ten years of this policy" }
        div #plot aria-live="polite" { (plot) }
        script { (PreEscaped(SCRIPT)) }
    };
    (
        status,
        Html(frame("Create a backup policy", Some(session), content).into_string()),
    )
        .into_response()
}

/// Redraws the plot and the field errors as the form changes (the form works without it).
const SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('policy-form');
  if (!form || !window.fetch) return;
  var timer = null, seq = 0;
  function redraw() {
    var body = new URLSearchParams(new FormData(form));
    body.set('action', 'preview');
    var mine = ++seq;
    fetch('/policies/preview', { method: 'POST', body: body, credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j || mine !== seq) return;
        document.getElementById('plot').innerHTML = j.plot;
        document.querySelectorAll('[data-error-for]').forEach(function (e) {
          var m = j.errors[e.getAttribute('data-error-for')] || '';
          e.textContent = m; e.hidden = !m;
        });
      });
  }
  form.addEventListener('change', redraw);
  form.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(redraw, 400); });
})();
"#;

#[cfg(test)]
mod tests;
