//! Editing a policy one step at a time, the way the Azure walkthroughs do: the az CLI's
//! `backup-policy trigger | retention-rule | tag` commands and PowerShell's `*ClientObject`
//! cmdlets. Each function is a pure edit of the typed model (or a builder of one of its
//! parts); the CLI reads and writes the files around them and the Rhai API the maps.
//!
//! The rules are the az CLI's (azure-cli-extensions, `dataprotection` `custom.py` and
//! `helpers.py`), with these departures, each because the az CLI's behaviour loses a user's
//! intent without a word:
//! - a lifecycle given only a target datastore or only a copy option is an error (the az CLI
//!   drops the copy silently), and `CustomCopyOption` takes its duration
//!   (`--copy-after-duration`), which the az CLI cannot express;
//! - removing a retention rule or a tag that does not exist is an error naming those that do
//!   (the az CLI does nothing);
//! - names match whatever their case and are stored in Azure's spelling (`monthly` edits or
//!   creates `Monthly`), as the service matches them;
//! - pgvault accepts daily schedules for PostgreSQL, so `Daily` is a retention rule and tag
//!   name here too (the az CLI offers Weekly, Monthly and Yearly), and a policy that lost its
//!   `Default` retention rule can be given one back.
//!
//! Edits do not validate the whole policy: between two edits a policy is legitimately
//! incomplete (the walkthrough adds the `Monthly` retention rule before the `Monthly` tag).
//! [`BackupPolicy::validate`] is the check before a policy is used, and it owns the syntax of
//! the schedule's intervals; the edits check only what they need to do their job.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;

use crate::duration::{DurationUnit, IsoDuration};
use crate::policy::{
    AbsoluteDeleteOption, AbsoluteMarker, AzureRetentionRule, BackupPolicy, CopyOption,
    CustomCopyOption, DEFAULT_RULE_NAME, DataStoreInfo, DataStoreType, DayOfMonth, DayOfWeek,
    Month, PolicyRule, RetentionTag, ScheduleBasedBackupCriteria, ScheduleBasedTriggerContext,
    SourceLifeCycle, TaggingCriteria, TargetCopySetting, Trigger, UnknownValue, WeekNumber,
};
use crate::templates::DEFAULT_TAGGING_PRIORITY;

// ---------------------------------------------------------------------------------------------
// Vocabularies
// ---------------------------------------------------------------------------------------------

/// How often a schedule repeats: `--interval-type` of `trigger create-schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalType {
    Weekly,
    Daily,
    Hourly,
}

impl IntervalType {
    pub const ALL: [IntervalType; 3] = [
        IntervalType::Weekly,
        IntervalType::Daily,
        IntervalType::Hourly,
    ];

    /// The name the Azure tools use.
    pub const fn as_str(self) -> &'static str {
        match self {
            IntervalType::Weekly => "Weekly",
            IntervalType::Daily => "Daily",
            IntervalType::Hourly => "Hourly",
        }
    }

    /// The interval counts the az CLI allows: weeks and days repeat every one, hours every 4,
    /// 6, 8 or 12 (so that backups fall at the same hours every day).
    pub const fn allowed_counts(self) -> &'static [u32] {
        match self {
            IntervalType::Weekly | IntervalType::Daily => &[1],
            IntervalType::Hourly => &[4, 6, 8, 12],
        }
    }

    /// The ISO 8601 period of a repeating interval: `P1W`, `P1D`, `PT{count}H`.
    fn period(self, count: u32) -> String {
        match self {
            IntervalType::Weekly => "P1W".to_owned(),
            IntervalType::Daily => "P1D".to_owned(),
            IntervalType::Hourly => format!("PT{count}H"),
        }
    }

    /// The type a repeating interval's period designator (its last letter) names, as the az
    /// CLI reads it to name the backup rule.
    fn from_designator(letter: char) -> Option<IntervalType> {
        match letter.to_ascii_uppercase() {
            'W' => Some(IntervalType::Weekly),
            'D' => Some(IntervalType::Daily),
            'H' => Some(IntervalType::Hourly),
            _ => None,
        }
    }
}

impl fmt::Display for IntervalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IntervalType {
    type Err = EditError;

    /// `Weekly`, `Daily` or `Hourly`, in any case, as the az CLI accepts them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IntervalType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| EditError::UnknownIntervalType(s.to_owned()))
    }
}

/// When a lifecycle copies its backups to the target datastore: `--copy-option`. The
/// [`CopyOption`] of the model carries the custom duration; this is only the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyOptionKind {
    /// `CopyOnExpiryOption`: when the backup expires in the source (a move to archive).
    CopyOnExpiry,
    /// `ImmediateCopyOption`: as soon as the backup is taken.
    Immediate,
    /// `CustomCopyOption`: a given duration after the backup was taken.
    Custom,
}

impl CopyOptionKind {
    pub const ALL: [CopyOptionKind; 3] = [
        CopyOptionKind::CopyOnExpiry,
        CopyOptionKind::Immediate,
        CopyOptionKind::Custom,
    ];

    /// Azure's `objectType` for this option.
    pub const fn as_str(self) -> &'static str {
        match self {
            CopyOptionKind::CopyOnExpiry => "CopyOnExpiryOption",
            CopyOptionKind::Immediate => "ImmediateCopyOption",
            CopyOptionKind::Custom => "CustomCopyOption",
        }
    }
}

impl fmt::Display for CopyOptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CopyOptionKind {
    type Err = EditError;

    /// `CopyOnExpiryOption`, `ImmediateCopyOption` or `CustomCopyOption`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CopyOptionKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| EditError::UnknownCopyOption(s.to_owned()))
    }
}

/// The retention rules a policy may gain, in Azure's spelling. The az CLI offers Weekly,
/// Monthly and Yearly for PostgreSQL; pgvault adds Daily because it accepts daily schedules,
/// and Default so that a policy without its default rule can be repaired.
pub const RETENTION_RULE_NAMES: [&str; 5] = ["Default", "Daily", "Weekly", "Monthly", "Yearly"];

/// The tags a schedule may carry and their priorities, as the az CLI assigns them: a backup
/// gets the first tag (lowest number) whose criteria match, so the rarer, longer-kept tags
/// come first.
const TAGGING_PRIORITIES: [(&str, i64); 5] = [
    ("Yearly", 10),
    ("Monthly", 15),
    ("Weekly", 20),
    ("Daily", 25),
    (DEFAULT_RULE_NAME, DEFAULT_TAGGING_PRIORITY),
];

/// The tagging priority the Azure tools give the tag `name` (any case): Yearly 10, Monthly 15,
/// Weekly 20, Daily 25, Default 99; `None` for any other name.
pub fn tagging_priority(name: &str) -> Option<i64> {
    TAGGING_PRIORITIES
        .iter()
        .find(|(tag, _)| tag.eq_ignore_ascii_case(name.trim()))
        .map(|(_, priority)| *priority)
}

// ---------------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------------

/// `trigger create-schedule` / `New-AzDataProtectionPolicyTriggerScheduleClientObject`: one
/// repeating interval per day, `R/{day}+00:00/{period}` with period `P1W`, `P1D` or
/// `PT{count}H`. Each day is a UTC date-time without offset (`2021-08-15T22:00:00`); the
/// offset is appended here, as the az CLI does.
pub fn create_schedule(
    interval_type: IntervalType,
    interval_count: u32,
    schedule_days: &[String],
) -> Result<Vec<String>, EditError> {
    if !interval_type.allowed_counts().contains(&interval_count) {
        return Err(EditError::IntervalCount {
            interval_type,
            count: interval_count,
        });
    }
    if schedule_days.is_empty() {
        return Err(EditError::NoScheduleDays);
    }
    let period = interval_type.period(interval_count);
    schedule_days
        .iter()
        .map(|day| {
            check_schedule_day(day)?;
            Ok(format!("R/{day}+00:00/{period}"))
        })
        .collect()
}

/// A schedule day must be exactly `YYYY-MM-DDThh:mm:ss`, a real date and time: anything else
/// would make an interval the service rejects, and an offset would be written twice.
fn check_schedule_day(day: &str) -> Result<(), EditError> {
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
    let shaped = |text: &str| {
        let bytes = text.as_bytes();
        bytes.len() == 19
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            })
            && NaiveDateTime::parse_from_str(text, FORMAT).is_ok()
    };
    if shaped(day) {
        return Ok(());
    }
    if day.get(..19).is_some_and(shaped) {
        return Err(EditError::ScheduleDayOffset {
            day: day.to_owned(),
            without: day[..19].to_owned(),
        });
    }
    Err(EditError::ScheduleDay {
        day: day.to_owned(),
    })
}

/// `trigger set` / `Edit-AzDataProtectionPolicyTriggerClientObject`: replaces the schedule of
/// the first backup rule with a schedule trigger, and renames that rule `BackupWeekly`,
/// `BackupDaily` or `BackupHourly` after the period of the first interval, as the az CLI does.
///
/// Only the period's designator is read here (to name the rule); the intervals' full syntax is
/// checked by [`BackupPolicy::validate`].
pub fn set_trigger(policy: &mut BackupPolicy, schedule: Vec<String>) -> Result<(), EditError> {
    let Some(first) = schedule.first() else {
        return Err(EditError::EmptySchedule);
    };
    let interval_type = interval_type_of(first)?;
    for interval in &schedule[1..] {
        interval_type_of(interval)?;
    }
    let (name, trigger) = scheduled_rule(policy)?;
    *name = format!("Backup{interval_type}");
    trigger.schedule.repeating_time_intervals = schedule;
    Ok(())
}

fn interval_type_of(interval: &str) -> Result<IntervalType, EditError> {
    interval
        .trim_end()
        .chars()
        .last()
        .and_then(IntervalType::from_designator)
        .ok_or_else(|| EditError::SchedulePeriod {
            interval: interval.to_owned(),
        })
}

/// The name and trigger of the first backup rule with a schedule trigger: the rule every
/// schedule and tag edit applies to (PostgreSQL policies have exactly one backup rule).
fn scheduled_rule(
    policy: &mut BackupPolicy,
) -> Result<(&mut String, &mut ScheduleBasedTriggerContext), EditError> {
    policy
        .policy_rules
        .iter_mut()
        .find_map(|rule| match rule {
            PolicyRule::Backup(rule) => match &mut rule.trigger {
                Trigger::Schedule(trigger) => Some((&mut rule.name, trigger)),
                Trigger::Adhoc(_) => None,
            },
            PolicyRule::Retention(_) => None,
        })
        .ok_or(EditError::NoScheduleTrigger)
}

// ---------------------------------------------------------------------------------------------
// Retention rules
// ---------------------------------------------------------------------------------------------

/// `retention-rule create-lifecycle` / `New-AzDataProtectionRetentionLifeCycleClientObject`:
/// backups in `source` are deleted `count` `unit`s after they were taken (`P{count}{D|W|M|Y}`)
/// and, when `target` and `copy_option` are both given, copied to `target` first.
/// `CustomCopyOption` copies after `custom_copy_after`, which only it takes.
pub fn create_lifecycle(
    source: DataStoreType,
    count: u32,
    unit: DurationUnit,
    target: Option<DataStoreType>,
    copy_option: Option<CopyOptionKind>,
    custom_copy_after: Option<IsoDuration>,
) -> Result<SourceLifeCycle, EditError> {
    if count == 0 {
        return Err(EditError::ZeroRetention { unit });
    }
    let copy = match (target, copy_option) {
        (None, None) => {
            if let Some(duration) = custom_copy_after {
                return Err(EditError::CopyAfterWithoutCopy { duration });
            }
            None
        }
        (Some(target), None) => return Err(EditError::CopyWithoutOption { target }),
        (None, Some(option)) => return Err(EditError::CopyWithoutTarget { option }),
        (Some(target), Some(option)) => {
            if target == source {
                return Err(EditError::CopyToSource { store: source });
            }
            let copy_after = match (option, custom_copy_after) {
                (CopyOptionKind::Custom, Some(duration)) => {
                    CopyOption::Custom(CustomCopyOption { duration })
                }
                (CopyOptionKind::Custom, None) => return Err(EditError::CustomCopyWithoutDuration),
                (option, Some(duration)) => {
                    return Err(EditError::CopyAfterNotCustom { option, duration });
                }
                (CopyOptionKind::CopyOnExpiry, None) => CopyOption::CopyOnExpiry,
                (CopyOptionKind::Immediate, None) => CopyOption::Immediate,
            };
            Some(TargetCopySetting {
                data_store: DataStoreInfo::new(target),
                copy_after,
            })
        }
    };
    Ok(SourceLifeCycle {
        source_data_store: DataStoreInfo::new(source),
        delete_after: AbsoluteDeleteOption::new(IsoDuration::from_count(count, unit)),
        target_data_store_copy_settings: copy.into_iter().collect(),
    })
}

/// `retention-rule set` / `Edit-AzDataProtectionPolicyRetentionRuleClientObject`: gives the
/// retention rule `name` (any case) these lifecycles, replacing its own, or adds the rule when
/// the policy has none of that name. A new rule must have one of [`RETENTION_RULE_NAMES`]
/// (stored in that spelling); it is the default rule if and only if it is `Default`.
pub fn set_retention_rule(
    policy: &mut BackupPolicy,
    name: &str,
    lifecycles: Vec<SourceLifeCycle>,
) -> Result<(), EditError> {
    if lifecycles.is_empty() {
        return Err(EditError::NoLifecycles {
            rule: name.to_owned(),
        });
    }
    let existing = policy.policy_rules.iter_mut().find_map(|rule| match rule {
        PolicyRule::Retention(rule) if rule.name.eq_ignore_ascii_case(name.trim()) => Some(rule),
        _ => None,
    });
    if let Some(rule) = existing {
        rule.lifecycles = lifecycles;
        return Ok(());
    }
    let canonical = RETENTION_RULE_NAMES
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| EditError::UnsupportedRetentionRule {
            name: name.to_owned(),
        })?;
    policy
        .policy_rules
        .push(PolicyRule::Retention(AzureRetentionRule {
            name: canonical.to_owned(),
            is_default: canonical == DEFAULT_RULE_NAME,
            lifecycles,
        }));
    Ok(())
}

/// `retention-rule remove`: removes the retention rule `name` (any case). The default rule
/// cannot go, and a rule that does not exist is an error naming those that do.
pub fn remove_retention_rule(policy: &mut BackupPolicy, name: &str) -> Result<(), EditError> {
    if name.trim().eq_ignore_ascii_case(DEFAULT_RULE_NAME) {
        return Err(EditError::RemoveDefaultRule);
    }
    let index = policy
        .policy_rules
        .iter()
        .position(|rule| {
            matches!(rule, PolicyRule::Retention(r) if r.name.eq_ignore_ascii_case(name.trim()))
        })
        .ok_or_else(|| EditError::NoSuchRetentionRule {
            name: name.to_owned(),
            existing: policy
                .retention_rule_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })?;
    if matches!(&policy.policy_rules[index], PolicyRule::Retention(r) if r.is_default) {
        return Err(EditError::RemoveDefaultRule);
    }
    policy.policy_rules.remove(index);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------------

/// `tag create-absolute-criteria` / `New-AzDataProtectionPolicyTagCriteriaClientObject
/// -AbsoluteCriteria`: matches the first backup of a period (`FirstOfMonth`), or every one.
pub fn absolute_criteria(marker: AbsoluteMarker) -> ScheduleBasedBackupCriteria {
    ScheduleBasedBackupCriteria {
        absolute_criteria: vec![marker],
        ..ScheduleBasedBackupCriteria::default()
    }
}

/// `tag create-generic-criteria` / `New-AzDataProtectionPolicyTagCriteriaClientObject
/// -DaysOfWeek ...`: matches backups on these calendar days. Names are Azure's in any case; a
/// day of the month is `1` to `28` or `Last`. At least one list must be non-empty.
pub fn generic_criteria(
    days_of_week: &[String],
    weeks_of_month: &[String],
    months_of_year: &[String],
    days_of_month: &[String],
) -> Result<ScheduleBasedBackupCriteria, EditError> {
    if days_of_week.is_empty()
        && weeks_of_month.is_empty()
        && months_of_year.is_empty()
        && days_of_month.is_empty()
    {
        return Err(EditError::NoCriteria);
    }
    Ok(ScheduleBasedBackupCriteria {
        days_of_the_week: parse_all::<DayOfWeek>(days_of_week)?,
        weeks_of_the_month: parse_all::<WeekNumber>(weeks_of_month)?,
        months_of_year: parse_all::<Month>(months_of_year)?,
        days_of_month: days_of_month
            .iter()
            .map(|day| parse_day_of_month(day))
            .collect::<Result<_, _>>()?,
        ..ScheduleBasedBackupCriteria::default()
    })
}

fn parse_all<T: FromStr<Err = UnknownValue>>(values: &[String]) -> Result<Vec<T>, EditError> {
    values
        .iter()
        .map(|value| value.parse().map_err(EditError::from))
        .collect()
}

/// A day of the month as the az CLI's `--days-of-month` takes it: `1` to `28`, or `Last` in
/// any case.
pub fn parse_day_of_month(day: &str) -> Result<DayOfMonth, EditError> {
    let text = day.trim();
    if text.eq_ignore_ascii_case("Last") {
        return Ok(DayOfMonth::Last);
    }
    match text.parse::<u8>() {
        Ok(date @ 1..=28) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(DayOfMonth::Date(date)),
        _ => Err(EditError::DayOfMonth(day.to_owned())),
    }
}

/// `tag set` / `Edit-AzDataProtectionPolicyTagClientObject`: gives the tag `name` (any case)
/// of the scheduled backup rule these criteria, replacing its own, or adds the tag with the
/// Azure tools' priority for its name ([`tagging_priority`]). The default tag matches every
/// backup, so its criteria cannot be set.
pub fn set_tag(
    policy: &mut BackupPolicy,
    name: &str,
    criteria: Vec<ScheduleBasedBackupCriteria>,
) -> Result<(), EditError> {
    if name.trim().eq_ignore_ascii_case(DEFAULT_RULE_NAME) {
        return Err(EditError::DefaultTagCriteria);
    }
    if criteria.is_empty() {
        return Err(EditError::NoTagCriteria {
            tag: name.to_owned(),
        });
    }
    if let Some(index) = criteria.iter().position(is_empty_criterion) {
        return Err(EditError::EmptyCriterion {
            tag: name.to_owned(),
            index,
        });
    }
    let (_, trigger) = scheduled_rule(policy)?;
    let existing = trigger
        .tagging_criteria
        .iter_mut()
        .find(|tag| tag.tag_info.tag_name.eq_ignore_ascii_case(name.trim()));
    if let Some(tag) = existing {
        if tag.is_default {
            return Err(EditError::DefaultTagCriteria);
        }
        tag.criteria = criteria;
        return Ok(());
    }
    let (canonical, priority) = TAGGING_PRIORITIES
        .into_iter()
        .filter(|(tag, _)| *tag != DEFAULT_RULE_NAME)
        .find(|(tag, _)| tag.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| EditError::UnsupportedTag {
            name: name.to_owned(),
        })?;
    trigger.tagging_criteria.push(TaggingCriteria {
        is_default: false,
        tagging_priority: priority,
        tag_info: RetentionTag::new(canonical),
        criteria,
    });
    Ok(())
}

/// A criterion with no list at all would match no backup (or, read loosely, every one): either
/// way not what a user meant, and the model's own builders never make one.
fn is_empty_criterion(criterion: &ScheduleBasedBackupCriteria) -> bool {
    criterion.absolute_criteria.is_empty()
        && criterion.days_of_the_week.is_empty()
        && criterion.weeks_of_the_month.is_empty()
        && criterion.months_of_year.is_empty()
        && criterion.days_of_month.is_empty()
        && criterion.schedule_times.is_empty()
}

/// `tag remove`: removes the tag `name` (any case) from the scheduled backup rule. The default
/// tag cannot go, and a tag that does not exist is an error naming those that do.
pub fn remove_tag(policy: &mut BackupPolicy, name: &str) -> Result<(), EditError> {
    if name.trim().eq_ignore_ascii_case(DEFAULT_RULE_NAME) {
        return Err(EditError::RemoveDefaultTag);
    }
    let (_, trigger) = scheduled_rule(policy)?;
    let tags = &mut trigger.tagging_criteria;
    let index = tags
        .iter()
        .position(|tag| tag.tag_info.tag_name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| EditError::NoSuchTag {
            name: name.to_owned(),
            existing: tags.iter().map(|t| t.tag_info.tag_name.clone()).collect(),
        })?;
    if tags[index].is_default {
        return Err(EditError::RemoveDefaultTag);
    }
    tags.remove(index);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why an edit was refused: each message says what was wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("unknown interval type {0:?}; use Weekly, Daily or Hourly")]
    UnknownIntervalType(String),
    #[error(
        "{interval_type} backups cannot repeat with interval count {count}; use {}",
        counts(*interval_type)
    )]
    IntervalCount {
        interval_type: IntervalType,
        count: u32,
    },
    #[error("no schedule day given; give at least one UTC date-time such as 2021-08-15T22:00:00")]
    NoScheduleDays,
    #[error(
        "schedule day {day:?} is not a date-time of the form YYYY-MM-DDThh:mm:ss; write it in \
         UTC like 2021-08-15T22:00:00"
    )]
    ScheduleDay { day: String },
    #[error(
        "schedule day {day:?} carries an offset; write it without one ({without:?}): the day is \
         in UTC and +00:00 is appended to it, as the az CLI does"
    )]
    ScheduleDayOffset { day: String, without: String },
    #[error(
        "the schedule is empty; give at least one repeating time interval such as \
         R/2021-08-15T22:00:00+00:00/P1W (trigger create-schedule prints them)"
    )]
    EmptySchedule,
    #[error(
        "{interval:?} does not end in a weekly, daily or hourly period; a repeating time \
         interval looks like R/2021-08-15T22:00:00+00:00/P1W, .../P1D or .../PT4H"
    )]
    SchedulePeriod { interval: String },
    #[error(
        "the policy has no backup rule with a schedule trigger to edit; start from \
         get-default-policy-template, whose BackupWeekly rule has one"
    )]
    NoScheduleTrigger,
    #[error(
        "unknown copy option {0:?}; use CopyOnExpiryOption, ImmediateCopyOption or CustomCopyOption"
    )]
    UnknownCopyOption(String),
    #[error(
        "a retention of 0 {unit} would delete each backup as it is taken; give a positive count"
    )]
    ZeroRetention { unit: DurationUnit },
    #[error(
        "a copy to {target} needs a copy option too: CopyOnExpiryOption (move when the backup \
         expires here), ImmediateCopyOption or CustomCopyOption; or leave out the target datastore"
    )]
    CopyWithoutOption { target: DataStoreType },
    #[error(
        "the copy option {option} needs a target datastore to copy to (ArchiveStore); or leave \
         out the copy option"
    )]
    CopyWithoutTarget { option: CopyOptionKind },
    #[error("a lifecycle cannot copy backups from {store} to {store}; copy to another datastore")]
    CopyToSource { store: DataStoreType },
    #[error(
        "CustomCopyOption copies a given time after the backup; give that duration (such as \
         P3M), or use CopyOnExpiryOption or ImmediateCopyOption"
    )]
    CustomCopyWithoutDuration,
    #[error(
        "a copy-after duration ({duration}) applies only to CustomCopyOption, not {option}; \
         leave it out or use CustomCopyOption"
    )]
    CopyAfterNotCustom {
        option: CopyOptionKind,
        duration: IsoDuration,
    },
    #[error(
        "a copy-after duration ({duration}) was given without a copy; add a target datastore \
         and CustomCopyOption, or leave it out"
    )]
    CopyAfterWithoutCopy { duration: IsoDuration },
    #[error(
        "the retention rule {rule:?} needs at least one lifecycle; create one with \
         retention-rule create-lifecycle"
    )]
    NoLifecycles { rule: String },
    #[error(
        "a retention rule named {name:?} cannot be added to a PostgreSQL policy; use one of {}",
        RETENTION_RULE_NAMES.join(", ")
    )]
    UnsupportedRetentionRule { name: String },
    #[error(
        "the Default retention rule keeps every backup no other rule claims, so it cannot be \
         removed; change how long it keeps them with retention-rule set --name Default"
    )]
    RemoveDefaultRule,
    #[error(
        "the policy has no retention rule named {name:?}; its retention rules are: {}",
        list(existing)
    )]
    NoSuchRetentionRule { name: String, existing: Vec<String> },
    #[error(
        "the criteria name no day, week or month; give at least one of days of the week, \
         weeks of the month, months of the year or days of the month"
    )]
    NoCriteria,
    #[error("day of the month {0:?} is not valid; use a date from 1 to 28, or Last")]
    DayOfMonth(String),
    #[error(transparent)]
    UnknownValue(#[from] UnknownValue),
    #[error(
        "the tag {tag:?} needs at least one criteria; create one with tag \
         create-absolute-criteria or tag create-generic-criteria"
    )]
    NoTagCriteria { tag: String },
    #[error(
        "criteria {index} for the tag {tag:?} names nothing to match; give an absolute \
         criteria or some days, weeks or months"
    )]
    EmptyCriterion { tag: String, index: usize },
    #[error(
        "a tag named {name:?} cannot be added; use one of Yearly, Monthly, Weekly or Daily, \
         named after the retention rule that keeps the tagged backups"
    )]
    UnsupportedTag { name: String },
    #[error(
        "the Default tag matches every backup no other tag claims, so it has no criteria to \
         set; set the criteria of a Daily, Weekly, Monthly or Yearly tag instead"
    )]
    DefaultTagCriteria,
    #[error(
        "the Default tag marks every backup no other tag claims, so it cannot be removed; \
         remove the other tags instead"
    )]
    RemoveDefaultTag,
    #[error(
        "the policy has no tag named {name:?}; its tags are: {}",
        list(existing)
    )]
    NoSuchTag { name: String, existing: Vec<String> },
}

fn counts(interval_type: IntervalType) -> String {
    match interval_type.allowed_counts().split_last() {
        Some((only, [])) => format!("interval count {only}"),
        Some((last, rest)) => {
            let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
            format!("an interval count of {} or {last}", rest.join(", "))
        }
        None => "another interval type".to_owned(),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DatasourceType, PolicyError};
    use crate::templates::default_policy_template;
    use serde_json::{Value, json};

    /// A case's expected outcome: a value, or a fragment of the error message.
    type Expected<T> = Result<T, &'static str>;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn flexible_template() -> BackupPolicy {
        default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer)
    }

    fn backup_rule_name(policy: &BackupPolicy) -> &str {
        &policy.backup_rule().unwrap().name
    }

    fn trigger(policy: &BackupPolicy) -> &ScheduleBasedTriggerContext {
        match &policy.backup_rule().unwrap().trigger {
            Trigger::Schedule(trigger) => trigger,
            Trigger::Adhoc(_) => panic!("schedule trigger expected"),
        }
    }

    fn tag_names(policy: &BackupPolicy) -> Vec<&str> {
        trigger(policy)
            .tagging_criteria
            .iter()
            .map(|t| t.tag_info.tag_name.as_str())
            .collect()
    }

    fn days() -> Vec<String> {
        strings(&[
            "2021-08-15T22:00:00",
            "2021-08-18T22:00:00",
            "2021-08-20T22:00:00",
        ])
    }

    #[test]
    fn create_schedule_follows_the_az_cli() {
        use IntervalType::*;
        // (interval type, count, days, expected intervals or a fragment of the error)
        type Case = (
            IntervalType,
            u32,
            &'static [&'static str],
            Expected<&'static [&'static str]>,
        );
        let cases: &[Case] = &[
            (
                Weekly,
                1,
                &["2021-08-15T22:00:00", "2021-08-18T22:00:00"],
                Ok(&[
                    "R/2021-08-15T22:00:00+00:00/P1W",
                    "R/2021-08-18T22:00:00+00:00/P1W",
                ]),
            ),
            (
                Daily,
                1,
                &["2021-05-02T05:30:00"],
                Ok(&["R/2021-05-02T05:30:00+00:00/P1D"]),
            ),
            (
                Hourly,
                6,
                &["2021-05-02T05:30:00"],
                Ok(&["R/2021-05-02T05:30:00+00:00/PT6H"]),
            ),
            (
                Hourly,
                12,
                &["2021-05-02T00:00:00"],
                Ok(&["R/2021-05-02T00:00:00+00:00/PT12H"]),
            ),
            (Weekly, 2, &["2021-08-15T22:00:00"], Err("interval count 1")),
            (Daily, 0, &["2021-08-15T22:00:00"], Err("interval count 1")),
            (Hourly, 5, &["2021-08-15T22:00:00"], Err("4, 6, 8 or 12")),
            (Hourly, 0, &["2021-08-15T22:00:00"], Err("4, 6, 8 or 12")),
            (Hourly, 1, &["2021-08-15T22:00:00"], Err("4, 6, 8 or 12")),
            (Weekly, 1, &[], Err("at least one")),
            (
                Weekly,
                1,
                &["2021-08-15T22:00:00+00:00"],
                Err("\"2021-08-15T22:00:00\""),
            ),
            (Weekly, 1, &["2021-08-15T22:00:00Z"], Err("offset")),
            (
                Weekly,
                1,
                &["2021-08-15 22:00:00"],
                Err("YYYY-MM-DDThh:mm:ss"),
            ),
            (Weekly, 1, &["2021-08-15"], Err("YYYY-MM-DDThh:mm:ss")),
            (
                Weekly,
                1,
                &["2021-02-30T22:00:00"],
                Err("YYYY-MM-DDThh:mm:ss"),
            ),
            (
                Weekly,
                1,
                &["2021-08-15T24:00:00"],
                Err("YYYY-MM-DDThh:mm:ss"),
            ),
            (Weekly, 1, &["2021-08-15T22:00"], Err("YYYY-MM-DDThh:mm:ss")),
        ];
        for (interval_type, count, days, expected) in cases {
            let result = create_schedule(*interval_type, *count, &strings(days));
            match (expected, result) {
                (Ok(intervals), Ok(actual)) => assert_eq!(&actual, intervals),
                (Err(fragment), Err(error)) => {
                    let message = error.to_string();
                    assert!(
                        message.contains(fragment),
                        "{interval_type} {count} {days:?}: {message}"
                    );
                }
                (expected, actual) => {
                    panic!("{interval_type} {count} {days:?}: {actual:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn interval_types_and_copy_options_parse_in_any_case() {
        assert_eq!("weekly".parse::<IntervalType>(), Ok(IntervalType::Weekly));
        assert_eq!("HOURLY".parse::<IntervalType>(), Ok(IntervalType::Hourly));
        let err = "Monthly".parse::<IntervalType>().unwrap_err().to_string();
        assert!(
            err.contains("\"Monthly\"") && err.contains("Hourly"),
            "{err}"
        );
        assert_eq!(
            "copyonexpiryoption".parse::<CopyOptionKind>(),
            Ok(CopyOptionKind::CopyOnExpiry)
        );
        for kind in CopyOptionKind::ALL {
            assert_eq!(kind.as_str().parse::<CopyOptionKind>(), Ok(kind));
        }
        let err = "Move".parse::<CopyOptionKind>().unwrap_err().to_string();
        assert!(err.contains("CustomCopyOption"), "{err}");
    }

    #[test]
    fn set_trigger_replaces_the_schedule_and_renames_the_rule() {
        // (schedule, expected rule name or error fragment)
        let cases: &[(&[&str], Result<&str, &str>)] = &[
            (
                &[
                    "R/2021-08-15T22:00:00+00:00/P1W",
                    "R/2021-08-18T22:00:00+00:00/P1W",
                ],
                Ok("BackupWeekly"),
            ),
            (&["R/2021-08-15T22:00:00+00:00/P1D"], Ok("BackupDaily")),
            (&["R/2021-08-15T22:00:00+00:00/PT4H"], Ok("BackupHourly")),
            (&[], Err("schedule is empty")),
            (
                &["R/2021-08-15T22:00:00+00:00/P1M"],
                Err("/P1M\" does not end"),
            ),
            (
                &["R/2021-08-15T22:00:00+00:00/P1D", "R/2021-08-15T22:00:00"],
                Err("R/2021-08-15T22:00:00\" does not end"),
            ),
        ];
        for (schedule, expected) in cases {
            let mut policy = flexible_template();
            let result = set_trigger(&mut policy, strings(schedule));
            match (expected, result) {
                (Ok(name), Ok(())) => {
                    assert_eq!(backup_rule_name(&policy), *name);
                    assert_eq!(
                        trigger(&policy).schedule.repeating_time_intervals,
                        strings(schedule)
                    );
                    assert_eq!(trigger(&policy).schedule.time_zone.as_deref(), Some("UTC"));
                }
                (Err(fragment), Err(error)) => {
                    assert!(
                        error.to_string().contains(fragment),
                        "{schedule:?}: {error}"
                    );
                    assert_eq!(
                        policy,
                        flexible_template(),
                        "a refused edit changes nothing"
                    );
                }
                (expected, actual) => panic!("{schedule:?}: {actual:?}, expected {expected:?}"),
            }
        }

        // A policy whose only backup rule is ad hoc has no schedule to set.
        let mut adhoc = flexible_template();
        if let PolicyRule::Backup(rule) = &mut adhoc.policy_rules[0] {
            rule.trigger = Trigger::Adhoc(crate::policy::AdhocBasedTriggerContext {
                tagging_criteria: crate::policy::AdhocBasedTaggingCriteria {
                    tag_info: Some(RetentionTag::new("Default")),
                },
            });
        }
        let schedule = strings(&["R/2021-08-15T22:00:00+00:00/P1W"]);
        assert_eq!(
            set_trigger(&mut adhoc, schedule.clone()),
            Err(EditError::NoScheduleTrigger)
        );
        assert_eq!(
            set_tag(
                &mut adhoc,
                "Monthly",
                vec![absolute_criteria(AbsoluteMarker::FirstOfMonth)]
            ),
            Err(EditError::NoScheduleTrigger)
        );
        assert_eq!(
            remove_tag(&mut adhoc, "Monthly"),
            Err(EditError::NoScheduleTrigger)
        );
    }

    #[test]
    fn create_lifecycle_writes_azure_json_and_refuses_half_copies() {
        use CopyOptionKind::*;
        use DataStoreType::*;
        use DurationUnit::*;
        type Case = (
            DataStoreType,
            u32,
            DurationUnit,
            Option<DataStoreType>,
            Option<CopyOptionKind>,
            Option<&'static str>,
            Result<Value, &'static str>,
        );
        let vault = json!({"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"});
        let archive = json!({"dataStoreType": "ArchiveStore", "objectType": "DataStoreInfoBase"});
        let cases: Vec<Case> = vec![
            (
                VaultStore,
                6,
                Months,
                None,
                None,
                None,
                Ok(json!({
                    "sourceDataStore": vault,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                    "targetDataStoreCopySettings": []
                })),
            ),
            (
                VaultStore,
                6,
                Months,
                Some(ArchiveStore),
                Some(CopyOnExpiry),
                None,
                Ok(json!({
                    "sourceDataStore": vault,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                    "targetDataStoreCopySettings": [{
                        "dataStore": archive,
                        "copyAfter": {"objectType": "CopyOnExpiryOption"}
                    }]
                })),
            ),
            (
                VaultStore,
                30,
                Days,
                Some(ArchiveStore),
                Some(Immediate),
                None,
                Ok(json!({
                    "sourceDataStore": vault,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P30D"},
                    "targetDataStoreCopySettings": [{
                        "dataStore": archive,
                        "copyAfter": {"objectType": "ImmediateCopyOption"}
                    }]
                })),
            ),
            (
                VaultStore,
                1,
                Years,
                Some(ArchiveStore),
                Some(Custom),
                Some("P3M"),
                Ok(json!({
                    "sourceDataStore": vault,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P1Y"},
                    "targetDataStoreCopySettings": [{
                        "dataStore": archive,
                        "copyAfter": {"objectType": "CustomCopyOption", "duration": "P3M"}
                    }]
                })),
            ),
            (
                ArchiveStore,
                24,
                Months,
                None,
                None,
                None,
                Ok(json!({
                    "sourceDataStore": archive,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P24M"},
                    "targetDataStoreCopySettings": []
                })),
            ),
            (
                VaultStore,
                2,
                Weeks,
                None,
                None,
                None,
                Ok(json!({
                    "sourceDataStore": vault,
                    "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P2W"},
                    "targetDataStoreCopySettings": []
                })),
            ),
            (VaultStore, 0, Months, None, None, None, Err("0 Months")),
            (
                VaultStore,
                6,
                Months,
                Some(ArchiveStore),
                None,
                None,
                Err("a copy to ArchiveStore needs a copy option"),
            ),
            (
                VaultStore,
                6,
                Months,
                None,
                Some(CopyOnExpiry),
                None,
                Err("CopyOnExpiryOption needs a target datastore"),
            ),
            (
                VaultStore,
                6,
                Months,
                Some(ArchiveStore),
                Some(Custom),
                None,
                Err("give that duration"),
            ),
            (
                VaultStore,
                6,
                Months,
                Some(ArchiveStore),
                Some(CopyOnExpiry),
                Some("P3M"),
                Err("applies only to CustomCopyOption, not CopyOnExpiryOption"),
            ),
            (
                VaultStore,
                6,
                Months,
                None,
                None,
                Some("P3M"),
                Err("without a copy"),
            ),
            (
                VaultStore,
                6,
                Months,
                Some(VaultStore),
                Some(Immediate),
                None,
                Err("from VaultStore to VaultStore"),
            ),
        ];
        for (source, count, unit, target, option, after, expected) in cases {
            let after = after.map(|d| d.parse::<IsoDuration>().unwrap());
            let what = format!("{source} {count} {unit} {target:?} {option:?} {after:?}");
            match (
                expected,
                create_lifecycle(source, count, unit, target, option, after),
            ) {
                (Ok(json), Ok(lifecycle)) => {
                    assert_eq!(serde_json::to_value(&lifecycle).unwrap(), json, "{what}");
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{what}: {error}");
                }
                (expected, actual) => panic!("{what}: {actual:?}, expected {expected:?}"),
            }
        }
    }

    fn lifecycle(months: u32) -> SourceLifeCycle {
        create_lifecycle(
            DataStoreType::VaultStore,
            months,
            DurationUnit::Months,
            None,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn set_retention_rule_replaces_or_adds() {
        // (name, expected rule names after the edit, or an error fragment)
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("Monthly", Ok(&["Default", "Monthly"])),
            ("monthly", Ok(&["Default", "Monthly"])),
            ("Daily", Ok(&["Default", "Daily"])),
            ("Weekly", Ok(&["Default", "Weekly"])),
            ("YEARLY", Ok(&["Default", "Yearly"])),
            ("Default", Ok(&["Default"])),
            ("default", Ok(&["Default"])),
            ("Quarterly", Err("\"Quarterly\" cannot be added")),
            ("", Err("Default, Daily, Weekly, Monthly, Yearly")),
        ];
        for (name, expected) in cases {
            let mut policy = flexible_template();
            let result = set_retention_rule(&mut policy, name, vec![lifecycle(6)]);
            match (expected, result) {
                (Ok(names), Ok(())) => {
                    assert_eq!(&policy.retention_rule_names(), names, "{name}");
                    let rule = policy.retention_rule(name).unwrap();
                    assert_eq!(rule.lifecycles, [lifecycle(6)], "{name}");
                    assert_eq!(rule.is_default, rule.name == "Default", "{name}");
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{name:?}: {error}");
                }
                (expected, actual) => panic!("{name:?}: {actual:?}, expected {expected:?}"),
            }
        }

        let mut policy = flexible_template();
        assert_eq!(
            set_retention_rule(&mut policy, "Monthly", vec![]),
            Err(EditError::NoLifecycles {
                rule: "Monthly".into()
            })
        );
        // Setting a rule twice replaces its lifecycles rather than adding a second rule.
        set_retention_rule(&mut policy, "Monthly", vec![lifecycle(6)]).unwrap();
        set_retention_rule(&mut policy, "MONTHLY", vec![lifecycle(12)]).unwrap();
        assert_eq!(policy.retention_rule_names(), ["Default", "Monthly"]);
        assert_eq!(
            policy.retention_rule("Monthly").unwrap().lifecycles,
            [lifecycle(12)]
        );
        // A rule pgvault would not add, already in a policy, is still edited in place.
        if let PolicyRule::Retention(rule) = &mut policy.policy_rules[2] {
            rule.name = "Custom".into();
        }
        set_retention_rule(&mut policy, "custom", vec![lifecycle(1)]).unwrap();
        assert_eq!(
            policy.retention_rule("Custom").unwrap().lifecycles,
            [lifecycle(1)]
        );
    }

    #[test]
    fn remove_retention_rule_keeps_default_and_names_what_exists() {
        let mut policy = flexible_template();
        set_retention_rule(&mut policy, "Monthly", vec![lifecycle(6)]).unwrap();
        // (name, expected rule names after, or error fragment)
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("Monthly", Ok(&["Default"])),
            ("monthly", Ok(&["Default"])),
            ("Default", Err("Default retention rule keeps every backup")),
            ("DEFAULT", Err("cannot be removed")),
            (
                "Weekly",
                Err(
                    "no retention rule named \"Weekly\"; its retention rules are: Default, Monthly",
                ),
            ),
        ];
        for (name, expected) in cases {
            let mut edited = policy.clone();
            match (expected, remove_retention_rule(&mut edited, name)) {
                (Ok(names), Ok(())) => assert_eq!(&edited.retention_rule_names(), names),
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{name}: {error}");
                    assert_eq!(edited, policy);
                }
                (expected, actual) => panic!("{name}: {actual:?}, expected {expected:?}"),
            }
        }
        // A default rule under another name is protected too.
        let mut renamed = policy.clone();
        if let PolicyRule::Retention(rule) = &mut renamed.policy_rules[1] {
            rule.name = "Basic".into();
        }
        assert_eq!(
            remove_retention_rule(&mut renamed, "Basic"),
            Err(EditError::RemoveDefaultRule)
        );
    }

    #[test]
    fn criteria_builders_follow_the_az_cli() {
        assert_eq!(
            serde_json::to_value(absolute_criteria(AbsoluteMarker::FirstOfMonth)).unwrap(),
            json!({"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]})
        );
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            Result<Value, &'static str>,
        );
        let cases: &[Case] = &[
            (
                &["Sunday", "friday"],
                &[],
                &[],
                &[],
                Ok(json!({
                    "objectType": "ScheduleBasedBackupCriteria",
                    "daysOfTheWeek": ["Sunday", "Friday"]
                })),
            ),
            (
                &[],
                &["First", "last"],
                &["January", "JULY"],
                &["1", "28", "Last", "last"],
                Ok(json!({
                    "objectType": "ScheduleBasedBackupCriteria",
                    "weeksOfTheMonth": ["First", "Last"],
                    "monthsOfYear": ["January", "July"],
                    "daysOfMonth": [
                        {"date": 1, "isLast": false},
                        {"date": 28, "isLast": false},
                        {"isLast": true},
                        {"isLast": true}
                    ]
                })),
            ),
            (&[], &[], &[], &[], Err("name no day, week or month")),
            (
                &[],
                &[],
                &[],
                &["0"],
                Err("\"0\" is not valid; use a date from 1 to 28, or Last"),
            ),
            (&[], &[], &[], &["29"], Err("1 to 28")),
            (&[], &[], &[], &["-1"], Err("1 to 28")),
            (&[], &[], &[], &["First"], Err("1 to 28")),
            (
                &["Sun"],
                &[],
                &[],
                &[],
                Err("unknown day of the week \"Sun\""),
            ),
            (
                &[],
                &["Fifth"],
                &[],
                &[],
                Err("unknown week of the month \"Fifth\""),
            ),
            (&[], &[], &["Jan"], &[], Err("unknown month \"Jan\"")),
        ];
        for (days, weeks, months, dates, expected) in cases {
            let result = generic_criteria(
                &strings(days),
                &strings(weeks),
                &strings(months),
                &strings(dates),
            );
            let what = format!("{days:?} {weeks:?} {months:?} {dates:?}");
            match (expected, result) {
                (Ok(json), Ok(criteria)) => {
                    assert_eq!(&serde_json::to_value(criteria).unwrap(), json, "{what}")
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{what}: {error}")
                }
                (expected, actual) => panic!("{what}: {actual:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn tagging_priorities_are_the_azure_tools() {
        let cases = [
            ("Yearly", Some(10)),
            ("Monthly", Some(15)),
            ("weekly", Some(20)),
            ("DAILY", Some(25)),
            ("Default", Some(99)),
            ("Hourly", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(tagging_priority(name), expected, "{name}");
        }
    }

    #[test]
    fn set_tag_replaces_or_adds_with_priority() {
        let first_of_month = || vec![absolute_criteria(AbsoluteMarker::FirstOfMonth)];
        // (name, expected tags after (name, priority) in input order, or an error fragment)
        type Tags = &'static [(&'static str, i64)];
        let cases: &[(&str, Expected<Tags>)] = &[
            ("Monthly", Ok(&[("Default", 99), ("Monthly", 15)])),
            ("monthly", Ok(&[("Default", 99), ("Monthly", 15)])),
            ("Yearly", Ok(&[("Default", 99), ("Yearly", 10)])),
            ("Weekly", Ok(&[("Default", 99), ("Weekly", 20)])),
            ("Daily", Ok(&[("Default", 99), ("Daily", 25)])),
            ("Default", Err("Default tag matches every backup")),
            ("default", Err("no criteria to set")),
            (
                "Hourly",
                Err("\"Hourly\" cannot be added; use one of Yearly, Monthly, Weekly or Daily"),
            ),
        ];
        for (name, expected) in cases {
            let mut policy = flexible_template();
            match (expected, set_tag(&mut policy, name, first_of_month())) {
                (Ok(tags), Ok(())) => {
                    let actual: Vec<(&str, i64)> = trigger(&policy)
                        .tagging_criteria
                        .iter()
                        .map(|t| (t.tag_info.tag_name.as_str(), t.tagging_priority))
                        .collect();
                    assert_eq!(&actual, tags, "{name}");
                    let added = trigger(&policy).tagging_criteria.last().unwrap();
                    assert!(!added.is_default);
                    assert_eq!(added.criteria, first_of_month());
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{name}: {error}");
                    assert_eq!(policy, flexible_template());
                }
                (expected, actual) => panic!("{name}: {actual:?}, expected {expected:?}"),
            }
        }

        // Setting a tag again replaces its criteria, as the walkthrough's second `tag set` does.
        let mut policy = flexible_template();
        set_tag(&mut policy, "Monthly", first_of_month()).unwrap();
        let sundays_and_fridays =
            generic_criteria(&strings(&["Sunday", "Friday"]), &[], &[], &[]).unwrap();
        set_tag(&mut policy, "MONTHLY", vec![sundays_and_fridays.clone()]).unwrap();
        assert_eq!(tag_names(&policy), ["Default", "Monthly"]);
        assert_eq!(
            trigger(&policy).tagging_criteria[1].criteria,
            [sundays_and_fridays]
        );

        assert_eq!(
            set_tag(&mut policy, "Weekly", vec![]),
            Err(EditError::NoTagCriteria {
                tag: "Weekly".into()
            })
        );
        assert_eq!(
            set_tag(
                &mut policy,
                "Weekly",
                vec![
                    absolute_criteria(AbsoluteMarker::FirstOfWeek),
                    ScheduleBasedBackupCriteria::default()
                ]
            ),
            Err(EditError::EmptyCriterion {
                tag: "Weekly".into(),
                index: 1
            })
        );
    }

    #[test]
    fn remove_tag_keeps_default_and_names_what_exists() {
        let mut policy = flexible_template();
        set_tag(
            &mut policy,
            "Monthly",
            vec![absolute_criteria(AbsoluteMarker::FirstOfMonth)],
        )
        .unwrap();
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("Monthly", Ok(&["Default"])),
            ("monthly", Ok(&["Default"])),
            ("Default", Err("Default tag marks every backup")),
            (
                "Yearly",
                Err("no tag named \"Yearly\"; its tags are: Default, Monthly"),
            ),
        ];
        for (name, expected) in cases {
            let mut edited = policy.clone();
            match (expected, remove_tag(&mut edited, name)) {
                (Ok(tags), Ok(())) => assert_eq!(&tag_names(&edited), tags),
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{name}: {error}");
                    assert_eq!(edited, policy);
                }
                (expected, actual) => panic!("{name}: {actual:?}, expected {expected:?}"),
            }
        }
    }

    /// The flexible server CLI walkthrough (shared/seeds/backup-postgresql-flex-cli.md), step
    /// by step: the policy it ends with is valid and says what the walkthrough means.
    #[test]
    fn the_flexible_server_cli_walkthrough_builds_a_valid_policy() {
        let mut policy = flexible_template();

        // az dataprotection backup-policy trigger create-schedule --interval-type Weekly
        //   --interval-count 1 --schedule-days 2021-08-15T22:00:00 2021-08-18T22:00:00 2021-08-20T22:00:00
        let schedule = create_schedule(IntervalType::Weekly, 1, &days()).unwrap();
        assert_eq!(
            schedule,
            [
                "R/2021-08-15T22:00:00+00:00/P1W",
                "R/2021-08-18T22:00:00+00:00/P1W",
                "R/2021-08-20T22:00:00+00:00/P1W"
            ]
        );
        // az dataprotection backup-policy trigger set --policy OSSPolicy.json --schedule ...
        set_trigger(&mut policy, schedule).unwrap();
        // az dataprotection backup-policy retention-rule create-lifecycle
        //   --retention-duration-count 6 --retention-duration-type Months --source-datastore VaultStore
        let vault_lifecycle = create_lifecycle(
            DataStoreType::VaultStore,
            6,
            DurationUnit::Months,
            None,
            None,
            None,
        )
        .unwrap();
        // az dataprotection backup-policy retention-rule set --lifecycles VaultLifeCycle.JSON
        //   --name Monthly --policy EditedOSSPolicy.json
        set_retention_rule(&mut policy, "Monthly", vec![vault_lifecycle]).unwrap();
        // Here the policy is incomplete (a Monthly rule that no tag leads to), which is why
        // the edits do not validate: the next one completes it.
        // az dataprotection backup-policy tag create-absolute-criteria --absolute-criteria FirstOfMonth
        let criteria = absolute_criteria(AbsoluteMarker::FirstOfMonth);
        // az dataprotection backup-policy tag set --criteria tagCriteria.JSON --name Monthly
        //   --policy AddedRetentionRulePolicy.JSON
        set_tag(&mut policy, "Monthly", vec![criteria]).unwrap();

        assert_eq!(policy.validate(), Ok(()));
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            json,
            json!({
                "objectType": "BackupPolicy",
                "name": "OssFlexiblePolicy1",
                "datasourceTypes": ["Microsoft.DBforPostgreSQL/flexibleServers"],
                "policyRules": [
                    {
                        "objectType": "AzureBackupRule",
                        "name": "BackupWeekly",
                        "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
                        "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                        "trigger": {
                            "objectType": "ScheduleBasedTriggerContext",
                            "schedule": {
                                "repeatingTimeIntervals": [
                                    "R/2021-08-15T22:00:00+00:00/P1W",
                                    "R/2021-08-18T22:00:00+00:00/P1W",
                                    "R/2021-08-20T22:00:00+00:00/P1W"
                                ],
                                "timeZone": "UTC"
                            },
                            // In the order the edits made them: the template's Default,
                            // then the tag `tag set` appended.
                            "taggingCriteria": [
                                {
                                    "isDefault": true,
                                    "taggingPriority": 99,
                                    "tagInfo": {"tagName": "Default", "id": "Default_"}
                                },
                                {
                                    "isDefault": false,
                                    "taggingPriority": 15,
                                    "tagInfo": {"tagName": "Monthly", "id": "Monthly_"},
                                    "criteria": [{
                                        "objectType": "ScheduleBasedBackupCriteria",
                                        "absoluteCriteria": ["FirstOfMonth"]
                                    }]
                                }
                            ]
                        }
                    },
                    {
                        "objectType": "AzureRetentionRule",
                        "name": "Default",
                        "isDefault": true,
                        "lifecycles": [{
                            "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                            "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3M"},
                            "targetDataStoreCopySettings": []
                        }]
                    },
                    {
                        "objectType": "AzureRetentionRule",
                        "name": "Monthly",
                        "isDefault": false,
                        "lifecycles": [{
                            "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"},
                            "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"},
                            "targetDataStoreCopySettings": []
                        }]
                    }
                ]
            })
        );
        // And it reads back as the same policy, through the validating entry point.
        assert_eq!(
            BackupPolicy::from_json(&json.to_string()).map(|_| ()),
            Ok(())
        );
    }

    /// The PowerShell walkthrough (shared/seeds/backup-postgresql-powershell.md): a Monthly rule
    /// that keeps backups six months in the vault, moves them to archive, and keeps them there
    /// 24 months; tagged first FirstOfMonth, then Sundays and Fridays.
    #[test]
    fn the_powershell_walkthrough_builds_a_valid_archive_policy() {
        let mut policy = default_policy_template(DatasourceType::AzureDatabaseForPostgreSQL);
        // $trigger = New-AzDataProtectionPolicyTriggerScheduleClientObject -ScheduleDays $schDates
        //   -IntervalType Weekly -IntervalCount 1
        let schedule = create_schedule(IntervalType::Weekly, 1, &days()).unwrap();
        // Edit-AzDataProtectionPolicyTriggerClientObject -Schedule $trigger -Policy $policyDefn
        set_trigger(&mut policy, schedule).unwrap();
        // $VaultToArchiveLifeCycle = New-AzDataProtectionRetentionLifeCycleClientObject
        //   -SourceDataStore VaultStore -SourceRetentionDurationType Months
        //   -SourceRetentionDurationCount 6 -TargetDataStore ArchiveStore -CopyOption CopyOnExpiryOption
        let vault_to_archive = create_lifecycle(
            DataStoreType::VaultStore,
            6,
            DurationUnit::Months,
            Some(DataStoreType::ArchiveStore),
            Some(CopyOptionKind::CopyOnExpiry),
            None,
        )
        .unwrap();
        // $OnArchiveLifeCycle = New-AzDataProtectionRetentionLifeCycleClientObject
        //   -SourceDataStore ArchiveStore -SourceRetentionDurationType Months -SourceRetentionDurationCount 24
        let on_archive = create_lifecycle(
            DataStoreType::ArchiveStore,
            24,
            DurationUnit::Months,
            None,
            None,
            None,
        )
        .unwrap();
        // Edit-AzDataProtectionPolicyRetentionRuleClientObject -Policy $policyDefn -Name Monthly
        //   -LifeCycles $VaultToArchiveLifeCycle, $OnArchiveLifeCycle -IsDefault $false
        set_retention_rule(&mut policy, "Monthly", vec![vault_to_archive, on_archive]).unwrap();
        // $tagCriteria = New-AzDataProtectionPolicyTagCriteriaClientObject -AbsoluteCriteria FirstOfMonth
        // Edit-AzDataProtectionPolicyTagClientObject -Policy $policyDefn -Name Monthly -Criteria $tagCriteria
        set_tag(
            &mut policy,
            "Monthly",
            vec![absolute_criteria(AbsoluteMarker::FirstOfMonth)],
        )
        .unwrap();
        assert_eq!(policy.validate(), Ok(()));
        // $tagCriteria = New-AzDataProtectionPolicyTagCriteriaClientObject -DaysOfWeek @("Sunday", "Friday")
        // Edit-AzDataProtectionPolicyTagClientObject -Policy $policyDefn -Name Monthly -Criteria $tagCriteria
        let criteria = generic_criteria(&strings(&["Sunday", "Friday"]), &[], &[], &[]).unwrap();
        set_tag(&mut policy, "Monthly", vec![criteria]).unwrap();
        assert_eq!(policy.validate(), Ok(()));

        let monthly = policy.retention_rule("Monthly").unwrap();
        assert!(!monthly.is_default);
        let vault = monthly.vault_store_lifecycle().unwrap();
        assert_eq!(vault.delete_after.duration, IsoDuration::months(6));
        assert_eq!(
            vault.target_data_store_copy_settings,
            [TargetCopySetting {
                data_store: DataStoreInfo::new(DataStoreType::ArchiveStore),
                copy_after: CopyOption::CopyOnExpiry,
            }]
        );
        let archive = monthly.lifecycle(DataStoreType::ArchiveStore).unwrap();
        assert_eq!(archive.delete_after.duration, IsoDuration::months(24));
        assert!(archive.target_data_store_copy_settings.is_empty());
        let tag = &trigger(&policy).tagging_criteria[1];
        assert_eq!(tag.tag_info.tag_name, "Monthly");
        assert_eq!(tag.tagging_priority, 15);
        assert_eq!(
            tag.criteria[0].days_of_the_week,
            [DayOfWeek::Sunday, DayOfWeek::Friday]
        );
        assert!(tag.criteria[0].absolute_criteria.is_empty());

        // Removing the Monthly tag and rule gives back the edited template, which validates.
        remove_tag(&mut policy, "Monthly").unwrap();
        remove_retention_rule(&mut policy, "Monthly").unwrap();
        assert_eq!(policy.validate(), Ok(()));
        assert_eq!(tag_names(&policy), ["Default"]);
        // Removing only the rule leaves a tag without one: the validation names it.
        let mut dangling = default_policy_template(DatasourceType::AzureDatabaseForPostgreSQL);
        set_retention_rule(&mut dangling, "Weekly", vec![lifecycle(1)]).unwrap();
        set_tag(
            &mut dangling,
            "Weekly",
            vec![absolute_criteria(AbsoluteMarker::FirstOfWeek)],
        )
        .unwrap();
        remove_retention_rule(&mut dangling, "Weekly").unwrap();
        let errors = dangling.validate().unwrap_err();
        assert!(
            matches!(&errors[..], [PolicyError::TagWithoutRetentionRule { tag, .. }] if tag == "Weekly"),
            "{errors:?}"
        );
    }
}
