//! The editor's form against the model: the template's form builds the template, a richer form
//! builds the policy the az CLI's edits would, a stored policy fills the form it came from,
//! and each kind of mistake is reported at the field that made it.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn draft() -> Draft {
    Draft::template("v")
}

fn rule<'a>(d: &'a mut Draft, name: &str) -> &'a mut RuleDraft {
    d.rules.get_mut(name).unwrap()
}

/// Weekly on Monday and Wednesday at 22:00 Berlin time, Default kept 4 weeks, and monthly
/// backups kept 12 months in the vault then moved to the archive for 3 years.
fn monthly_archive() -> Draft {
    let mut d = draft();
    d.days = vec!["Monday".into(), "Wednesday".into()];
    d.time = "22:00".into();
    d.timezone = "Europe/Berlin".into();
    rule(&mut d, "Default").keep = "4".into();
    rule(&mut d, "Default").unit = "Weeks".into();
    let m = rule(&mut d, "Monthly");
    m.on = true;
    m.archive = "CopyOnExpiryOption".into();
    m.archive_keep = "3".into();
    m.archive_unit = "Years".into();
    d
}

#[test]
fn the_templates_form_builds_the_default_template() {
    let mut expected =
        default_policy_template(DatasourceType::AzureDatabaseForPostgreSQLFlexibleServer);
    expected.name = None;
    assert_eq!(build(&draft(), false).unwrap(), expected);
}

#[test]
fn a_form_builds_the_policy_the_az_edits_make() {
    let policy = build(&monthly_archive(), false).unwrap();
    let value = serde_json::to_value(&policy).unwrap();
    let rules = value["policyRules"].as_array().unwrap();
    assert_eq!(rules[0]["name"], "BackupWeekly");
    assert_eq!(
        rules[0]["trigger"]["schedule"],
        json!({
            // No offset: the wall clock of the chosen zone, on a Monday and a Wednesday.
            "repeatingTimeIntervals": ["R/2021-08-16T22:00:00/P1W", "R/2021-08-18T22:00:00/P1W"],
            "timeZone": "Europe/Berlin"
        })
    );
    let tags: Vec<(&str, i64)> = rules[0]["trigger"]["taggingCriteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tagInfo"]["tagName"].as_str().unwrap(),
                t["taggingPriority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tags, [("Default", 99), ("Monthly", 15)]);
    assert_eq!(
        rules[0]["trigger"]["taggingCriteria"][1]["criteria"][0]["absoluteCriteria"],
        json!(["FirstOfMonth"])
    );
    let default = policy.retention_rule("Default").unwrap();
    assert_eq!(
        default.lifecycles[0].delete_after.duration.to_string(),
        "P4W"
    );
    let monthly = policy.retention_rule("Monthly").unwrap();
    let vault = monthly.lifecycle(DataStoreType::VaultStore).unwrap();
    assert_eq!(vault.delete_after.duration.to_string(), "P12M");
    assert_eq!(
        vault.target_data_store_copy_settings[0].copy_after,
        CopyOption::CopyOnExpiry
    );
    let archive = monthly.lifecycle(DataStoreType::ArchiveStore).unwrap();
    assert_eq!(archive.delete_after.duration.to_string(), "P3Y");
}

#[test]
fn a_stored_policy_fills_the_form_it_was_built_from() {
    let mut d = monthly_archive();
    let y = rule(&mut d, "Yearly");
    y.on = true;
    y.criterion = "Days".into();
    y.months = "January, July".into();
    y.days_of_month = "1, Last".into();
    let w = rule(&mut d, "Weekly");
    w.on = true;
    w.archive = "CustomCopyOption".into();
    w.copy_after = "2".into();
    w.copy_unit = "Weeks".into();
    w.archive_keep = "6".into();
    w.archive_unit = "Months".into();
    let policy = build(&d, false).unwrap();
    assert_eq!(Draft::from_policy("v", &policy), d);

    let mut hourly = draft();
    hourly.frequency = "Hourly".into();
    hourly.hours = "6".into();
    hourly.time = "01:15".into();
    let policy = build(&hourly, false).unwrap();
    assert_eq!(
        policy_edit_intervals(&policy),
        ["R/2021-08-15T01:15:00+00:00/PT6H"]
    );
    assert_eq!(Draft::from_policy("v", &policy), hourly);
}

fn policy_edit_intervals(policy: &BackupPolicy) -> Vec<String> {
    match &policy.backup_rule().unwrap().trigger {
        Trigger::Schedule(t) => t.schedule.repeating_time_intervals.clone(),
        Trigger::Adhoc(_) => Vec::new(),
    }
}

#[test]
fn each_mistake_is_shown_at_its_field() {
    type Edit = fn(&mut Draft);
    let cases: &[(&str, Edit, &str, &str)] = &[
        ("no name", |_| {}, "name", "give the policy a name"),
        ("no day", |d| d.days.clear(), "days", "at least one day"),
        ("bad time", |d| d.time = "25:00".into(), "time", "HH:MM"),
        (
            "bad zone",
            |d| d.timezone = "Mars/Olympus".into(),
            "timezone",
            "Mars/Olympus",
        ),
        (
            "zero retention",
            |d| rule(d, "Default").keep = "0".into(),
            "Default.keep",
            "above 0",
        ),
        (
            "vault retention too short (validation)",
            |d| {
                let r = rule(d, "Default");
                r.keep = "3".into();
                r.unit = "Days".into();
            },
            "Default.keep",
            "7 days to 10 years",
        ),
        (
            "archive retention too short (validation)",
            |d| {
                let m = rule(d, "Monthly");
                m.on = true;
                m.archive = "CopyOnExpiryOption".into();
                m.archive_keep = "1".into();
                m.archive_unit = "Months".into();
            },
            "Monthly.archive_keep",
            "6 months to 10 years",
        ),
        (
            "copy after the vault deletes (validation)",
            |d| {
                let m = rule(d, "Monthly");
                m.on = true;
                m.archive = "CustomCopyOption".into();
                m.copy_after = "2".into();
                m.copy_unit = "Years".into();
            },
            "Monthly.archive",
            "comes after the vault tier deletes",
        ),
        (
            "unknown day in a criterion",
            |d| {
                let y = rule(d, "Yearly");
                y.on = true;
                y.criterion = "Days".into();
                y.days_of_week = "Funday".into();
            },
            "Yearly.criterion",
            "Funday",
        ),
        (
            "hourly every 5 hours",
            |d| {
                d.frequency = "Hourly".into();
                d.hours = "5".into();
            },
            "hours",
            "4, 6, 8 or 12",
        ),
    ];
    for (what, edit, field, needle) in cases {
        let mut d = draft();
        d.name = "P".into();
        if *what == "no name" {
            d.name.clear();
        }
        edit(&mut d);
        let errors = build(&d, true).expect_err(what);
        let at = errors
            .get(*field)
            .unwrap_or_else(|| panic!("{what}: no error at {field}: {errors:?}"));
        assert!(
            at.iter().any(|m| m.contains(needle)),
            "{what}: {at:?} does not say {needle:?}"
        );
        assert_eq!(errors.len(), 1, "{what}: errors elsewhere too: {errors:?}");
    }
}

#[test]
fn the_timeline_follows_the_policy() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let template = timeline(&build(&draft(), false).unwrap(), start).unwrap();
    assert!(template.contains("<svg"), "{template}");
    assert!(template.contains("2026"));
    assert!(template.contains("2036"), "ten years from the start's day");
    assert!(!template.contains("ArchiveStore") && !template.contains("Monthly"));

    let archived = timeline(&build(&monthly_archive(), false).unwrap(), start).unwrap();
    assert!(archived.contains("Monthly"));
    assert_ne!(archived, template);
    // Deterministic: the same policy at the same start draws the same picture.
    assert_eq!(
        archived,
        timeline(&build(&monthly_archive(), false).unwrap(), start).unwrap()
    );
}

#[test]
fn a_posted_form_reads_back_as_the_draft() {
    let form: Vec<(String, String)> = [
        ("vault", "v"),
        ("name", "P"),
        ("frequency", "Daily"),
        ("time", "03:00"),
        ("timezone", "W. Europe Standard Time"),
        ("Default.keep", "30"),
        ("Default.unit", "Days"),
        ("Weekly.on", "on"),
        ("Weekly.criterion", "FirstOfWeek"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let d = Draft::from_form(&form);
    assert_eq!(d.frequency, "Daily");
    assert!(d.days.is_empty(), "unticked boxes are absent from a post");
    assert!(d.rules["Weekly"].on && !d.rules["Monthly"].on);
    let policy = build(&d, true).unwrap();
    assert_eq!(
        policy_edit_intervals(&policy),
        ["R/2021-08-15T03:00:00/P1D"]
    );
    assert_eq!(
        policy.retention_rule("Default").unwrap().lifecycles[0]
            .delete_after
            .duration
            .to_string(),
        "P30D"
    );
}

// ---------------------------------------------------------------------------------------------
// The pages through the router, with a real home in a temporary folder
// ---------------------------------------------------------------------------------------------

mod pages {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt as _;

    use pgvault_host::access::Role;
    use pgvault_host::api::Home;
    use pgvault_host::service::Pgvault;

    use super::super::{Draft, build};
    use crate::{DEFAULT_SUBSCRIPTION_ID, Portal, router};

    struct Console {
        _dir: tempfile::TempDir,
        svc: Arc<Pgvault>,
        app: axum::Router,
    }

    struct Page {
        status: StatusCode,
        location: Option<String>,
        body: String,
    }

    impl Console {
        async fn new() -> Console {
            let dir = tempfile::tempdir().unwrap();
            let svc = Arc::new(Pgvault::open(Home::at(dir.path().join("home"))).unwrap());
            let portal = Portal::new(svc.clone(), false, "127.0.0.1:8080".parse().unwrap());
            let console = Console {
                _dir: dir,
                svc,
                app: router(Arc::new(portal)),
            };
            let token = console
                .svc
                .create_api_token("setup", Role::Contributor)
                .unwrap();
            let vault = format!(
                "/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v1?api-version=2026-06-01"
            );
            let request = Request::put(vault)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({"location": "local"}).to_string()))
                .unwrap();
            let response = console.app.clone().oneshot(request).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            console
        }

        async fn send(&self, request: Request<Body>) -> Page {
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .map(|l| l.to_str().unwrap().to_owned());
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            Page {
                status,
                location,
                body: String::from_utf8(bytes.to_vec()).unwrap(),
            }
        }

        /// A session cookie for a new token of `role`.
        async fn sign_in(&self, name: &str, role: Role) -> String {
            let token = self.svc.create_api_token(name, role).unwrap();
            let request = Request::post("/sign-in")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .unwrap();
            let response = self.app.clone().oneshot(request).await.unwrap();
            let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
            cookie.split(';').next().unwrap().to_owned()
        }

        async fn get(&self, cookie: &str, uri: &str) -> Page {
            let request = Request::get(uri)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap();
            self.send(request).await
        }

        async fn post(&self, cookie: &str, uri: &str, form: &[(&str, &str)]) -> Page {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let request = Request::post(uri)
                .header(header::COOKIE, cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap();
            self.send(request).await
        }

        /// The anti-forgery token the editor's page carries for this session.
        async fn csrf(&self, cookie: &str) -> String {
            let page = self.get(cookie, "/policies/new?vault=v1").await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let marker = "name=\"csrf\" value=\"";
            let start = page.body.find(marker).unwrap() + marker.len();
            page.body[start..].split('"').next().unwrap().to_owned()
        }
    }

    /// The monthly-archive form as posted.
    fn monthly<'a>(csrf: &'a str, name: &'a str, action: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("csrf", csrf),
            ("vault", "v1"),
            ("name", name),
            ("frequency", "Weekly"),
            ("day", "Monday"),
            ("day", "Wednesday"),
            ("time", "22:00"),
            ("timezone", "Europe/Berlin"),
            ("Default.keep", "4"),
            ("Default.unit", "Weeks"),
            ("Default.archive", "none"),
            ("Monthly.on", "on"),
            ("Monthly.keep", "12"),
            ("Monthly.unit", "Months"),
            ("Monthly.archive", "CopyOnExpiryOption"),
            ("Monthly.archive_keep", "3"),
            ("Monthly.archive_unit", "Years"),
            ("Monthly.criterion", "FirstOfMonth"),
            ("action", action),
        ]
    }

    #[tokio::test]
    async fn the_editor_previews_validates_and_creates_a_policy() {
        let console = Console::new().await;
        let editor = console.sign_in("editor", Role::Contributor).await;
        let csrf = console.csrf(&editor).await;

        // The preview: a plot for a good form, the error at its field for a bad one.
        let good = console
            .post(&editor, "/policies/preview", &monthly(&csrf, "", "preview"))
            .await;
        assert_eq!(good.status, StatusCode::OK);
        let good: Value = serde_json::from_str(&good.body).unwrap();
        assert!(good["plot"].as_str().unwrap().contains("<svg"), "{good}");
        assert!(good["plot"].as_str().unwrap().contains("Monthly"));
        assert_eq!(good["errors"], json!({}));
        let mut bad = monthly(&csrf, "", "preview");
        bad.retain(|(k, _)| *k != "Monthly.archive_keep");
        bad.push(("Monthly.archive_keep", "1"));
        bad.retain(|(k, _)| *k != "Monthly.archive_unit");
        bad.push(("Monthly.archive_unit", "Months"));
        let bad = console.post(&editor, "/policies/preview", &bad).await;
        let bad: Value = serde_json::from_str(&bad.body).unwrap();
        assert!(
            bad["errors"]["Monthly.archive_keep"]
                .as_str()
                .unwrap()
                .contains("6 months to 10 years"),
            "{bad}"
        );
        assert!(!bad["plot"].as_str().unwrap().contains("<svg"));

        // A form with an error comes back with the error at its field, nothing created.
        let page = console
            .post(&editor, "/policies/new", &monthly(&csrf, "", "create"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("id=\"error-name\""), "{}", page.body);
        assert!(page.body.contains("give the policy a name"));

        // Created: the stored policy is the one the form builds.
        let page = console
            .post(
                &editor,
                "/policies/new",
                &monthly(&csrf, "Monthly12", "create"),
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(
            page.location.as_deref(),
            Some("/vaults/v1/policies/Monthly12")
        );
        let stored = console.svc.policy_json("v1", "Monthly12").await.unwrap();
        let form: Vec<(String, String)> = monthly(&csrf, "Monthly12", "create")
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let expected =
            serde_json::to_value(build(&Draft::from_form(&form), true).unwrap()).unwrap();
        assert_eq!(stored["properties"]["policyRules"], expected["policyRules"]);

        // Its page draws it; the list links it; "edit" fills the editor from it.
        let page = console.get(&editor, "/vaults/v1/policies/Monthly12").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("<svg") && page.body.contains("Monthly"));
        let page = console.get(&editor, "/policies").await;
        assert!(
            page.body.contains("href=\"/vaults/v1/policies/Monthly12\""),
            "{}",
            page.body
        );
        let page = console
            .get(&editor, "/policies/new?vault=v1&from=Monthly12")
            .await;
        assert!(
            page.body.contains("value=\"Europe/Berlin\""),
            "{}",
            page.body
        );
        assert!(page.body.contains("value=\"CopyOnExpiryOption\" selected"));

        // The same name again: Azure's refusal, shown with its code.
        let page = console
            .post(
                &editor,
                "/policies/new",
                &monthly(&csrf, "Monthly12", "create"),
            )
            .await;
        assert!(!page.status.is_success(), "{}", page.status);
        assert!(
            page.body.contains("UserErrorBMSUpdatePolicyNotSupported"),
            "{}",
            page.body
        );
    }

    #[tokio::test]
    async fn a_reader_may_preview_but_not_create_and_forged_posts_are_refused() {
        let console = Console::new().await;
        let reader = console.sign_in("viewer", Role::Reader).await;
        let csrf = console.csrf(&reader).await;

        let preview = console
            .post(&reader, "/policies/preview", &monthly(&csrf, "", "preview"))
            .await;
        assert_eq!(preview.status, StatusCode::OK);
        let page = console
            .post(&reader, "/policies/new", &monthly(&csrf, "P", "create"))
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.body.contains("AuthorizationFailed"));
        assert!(console.svc.policy_json("v1", "P").await.is_err());

        let editor = console.sign_in("editor", Role::Contributor).await;
        // The reader's token is not the editor's session's.
        let page = console
            .post(&editor, "/policies/new", &monthly(&csrf, "P", "create"))
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        let preview = console
            .post(
                &editor,
                "/policies/preview",
                &monthly(&csrf, "P", "preview"),
            )
            .await;
        assert_eq!(preview.status, StatusCode::FORBIDDEN);
        assert!(console.svc.policy_json("v1", "P").await.is_err());

        // Without a session: sign in first.
        let page = console.get("pgvault_session=nope", "/policies").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location.as_deref(), Some("/sign-in"));
    }
}
