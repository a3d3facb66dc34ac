//! The console's policy editor in a real browser (headless Chromium through WebDriver): a
//! mistake shows at its field and the timeline goes as the form changes, without a page
//! load; fixed, the ten-year timeline comes back; a Yearly rule ticked appears in it; the
//! policy is created and its page draws it. Screenshots go with the console's
//! (`target/tmp/console-screenshots`, `policy-*.png`).

use std::path::PathBuf;

use crate::sdk::{Server, contributor_token};
use crate::support::World;
use crate::webdriver::Browser;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

#[test]
fn the_policy_editor_redraws_its_timeline_and_shows_errors_at_their_field() {
    let w = World::new();
    w.vault_with_policy("PolicyVault");
    let token = contributor_token(&w);
    let (_server, base) = Server::start_with(&w, &[]);
    let b = Browser::start(&screenshots());

    b.go(&format!("{base}/sign-in"));
    b.fill("#token", &token);
    b.click_and_load("form.card button[type=submit]");
    b.go(&format!("{base}/policies/new?vault=PolicyVault"));
    assert_eq!(b.text("main h1"), "Create a backup policy");
    let editor = b.url();
    // The template's policy: one tag (Default) in the legend.
    assert!(b.has("#plot svg #legend rect.f0") && !b.has("#plot svg #legend rect.f1"));

    // A retention of zero: the error at its field, the timeline gone, on the same page.
    b.fill("input[name=\"Default.keep\"]", "0");
    let error = b.wait_for("[data-error-for=\"Default.keep\"]:not([hidden])", 20);
    assert!(error.contains("above 0"), "{error}");
    assert!(b.has("#plot p.quiet") || !b.has("#plot svg"));
    b.screenshot("policy-01-error-at-field");

    // Fixed, and a Yearly rule ticked: the timeline is back with a second tag.
    b.fill("input[name=\"Default.keep\"]", "3");
    b.click("input[name=\"Yearly.on\"]");
    b.wait_for("#plot svg #legend rect.f1", 20);
    assert!(b.text("#plot svg #legend").contains("Yearly"));
    assert!(!b.has("[data-error-for=\"Default.keep\"]:not([hidden])"));
    assert_eq!(b.url(), editor, "redrawn in place, no page load");
    b.screenshot("policy-02-timeline-redrawn");

    // Created: the policy's page draws the same two tags.
    b.fill("#name", "TenYears");
    b.click_and_load("button[value=create]");
    assert_eq!(b.text("main h1"), "Policy TenYears");
    assert!(b.text("#main svg #legend").contains("Yearly"));
    b.screenshot("policy-03-created");
    let shown = w.json(&[
        "backup-policy",
        "show",
        "-v",
        "PolicyVault",
        "-n",
        "TenYears",
    ]);
    assert!(shown.to_string().contains("FirstOfYear"), "{shown}");
}
