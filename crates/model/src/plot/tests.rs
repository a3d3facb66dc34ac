//! Tests of the plot: the planning helpers one by one, then whole documents, parsed back with
//! a small XML checker ([`xml`]) and compared with what the simulation says. Realistic cases
//! run real policies through the real simulator ([`fixtures`]); shapes no sensible policy
//! produces (odd tag names, thousands of points kept forever, lanes past the budget) are
//! built by hand.

mod fixtures;
mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::policy::DataStoreType;
use crate::retention::{DataStoreSpan, Fate};
use crate::simulate::{SimulatedPoint, Summary, simulate};
use chrono::TimeDelta;

use super::*;
use fixtures::utc;
use xml::{Element, elements};

// ---------------------------------------------------------------------------------------------
// Planning helpers
// ---------------------------------------------------------------------------------------------

fn scale(t0: i64, t1: i64) -> Scale {
    Scale {
        t0,
        t1,
        x0: 0.0,
        x1: 100.0,
    }
}

#[test]
fn lanes_reuse_only_after_a_gap() {
    // (extents, expected lanes)
    type Case<'a> = (&'a [(f64, f64)], &'a [usize]);
    let cases: [Case; 4] = [
        (&[(0.0, 10.0), (5.0, 15.0)], &[0, 1]),
        (&[(0.0, 10.0), (12.0, 20.0)], &[0, 0]),
        // Touching or nearly touching bars would read as one: they get another lane.
        (&[(0.0, 10.0), (11.0, 20.0)], &[0, 1]),
        (&[(0.0, 10.0), (5.0, 15.0), (13.0, 20.0)], &[0, 1, 0]),
    ];
    for (extents, expected) in cases {
        let lanes = pack_lanes(extents, 10).unwrap();
        assert_eq!(lanes.of_stay, expected, "extents {extents:?}");
    }
}

#[test]
fn packing_gives_up_past_the_lane_budget() {
    let extents: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 100.0)).collect();
    assert_eq!(pack_lanes(&extents, 5).map(|l| l.count), Some(5));
    assert!(pack_lanes(&extents, 4).is_none());
}

#[test]
fn density_counts_held_stays_per_column() {
    let s = scale(0, 100);
    let stays = [
        Stay {
            from: 0,
            until: Some(50),
            point: 0,
        },
        Stay {
            from: 10,
            until: None,
            point: 1,
        },
        // Back to back with the first: never counted twice.
        Stay {
            from: 50,
            until: Some(60),
            point: 2,
        },
    ];
    let cols = density_columns(&stays, &s);
    assert_eq!(cols.len(), 100);
    assert_eq!(cols[5], 1);
    assert_eq!(cols[20], 2);
    assert_eq!(cols[50], 2);
    assert_eq!(cols[55], 2);
    assert_eq!(cols[70], 1);
    assert_eq!(cols[99], 1);
}

#[test]
fn numbers_and_text_format() {
    assert_eq!(num(12.0), "12");
    assert_eq!(num(12.345), "12.3");
    assert_eq!(num(-0.01), "0");
    assert_eq!(thousands(87_672), "87,672");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000_000), "1,000,000");
    assert_eq!(
        esc("a<b>&\"c'\u{1}"),
        "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}"
    );
}

#[test]
fn tags_order_longest_lived_first_and_default_last() {
    let mut names = vec!["Default", "Weekly", "Zeta", "Yearly", "Alpha", "Monthly"];
    names.sort_by_key(|n| tag_rank(n));
    assert_eq!(
        names,
        ["Yearly", "Monthly", "Weekly", "Alpha", "Zeta", "Default"]
    );
}

// ---------------------------------------------------------------------------------------------
// Whole documents
// ---------------------------------------------------------------------------------------------

/// The realistic simulations, each run once per test binary: the hourly one is 87,648 points.
fn weekly() -> &'static Simulation {
    static SIM: OnceLock<Simulation> = OnceLock::new();
    SIM.get_or_init(fixtures::weekly_ten_years)
}

fn hourly() -> &'static Simulation {
    static SIM: OnceLock<Simulation> = OnceLock::new();
    SIM.get_or_init(fixtures::hourly_ten_years)
}

fn half_year() -> &'static Simulation {
    static SIM: OnceLock<Simulation> = OnceLock::new();
    SIM.get_or_init(fixtures::daily_half_year)
}

fn parse(svg: &str) -> Vec<Element> {
    elements(svg).unwrap_or_else(|e| panic!("not well-formed XML: {e}"))
}

fn span(store: DataStoreType, from: DateTime<Utc>, until: Option<DateTime<Utc>>) -> DataStoreSpan {
    DataStoreSpan {
        data_store_type: store,
        from,
        until,
    }
}

/// A hand-made point whose `state_at` and fate follow from its spans, as the simulator's do.
fn point(
    time: DateTime<Utc>,
    tag: &str,
    spans: Vec<DataStoreSpan>,
    at: DateTime<Utc>,
) -> SimulatedPoint {
    let state_at: Vec<DataStoreType> = spans
        .iter()
        .filter(|s| s.holds_at(at))
        .map(|s| s.data_store_type)
        .collect();
    let fate = if time > at {
        Fate::NotYetTaken
    } else if state_at.is_empty() {
        Fate::Deleted
    } else {
        Fate::Retained
    };
    SimulatedPoint {
        recovery_point_time: time,
        retention_tag_name: tag.to_owned(),
        data_stores: spans,
        state_at,
        reason: String::new(),
        fate,
    }
}

/// A hand-made simulation, its summary counted from the points.
fn simulation(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
    recovery_points: Vec<SimulatedPoint>,
) -> Simulation {
    let mut summary = Summary::default();
    for p in &recovery_points {
        summary.vault_store += usize::from(p.state_at.contains(&DataStoreType::VaultStore));
        summary.archive_store += usize::from(p.state_at.contains(&DataStoreType::ArchiveStore));
        summary.deleted += usize::from(p.fate == Fate::Deleted);
    }
    Simulation {
        from,
        to,
        at,
        recovery_points,
        summary,
    }
}

fn held_in(p: &SimulatedPoint, store: DataStoreType) -> bool {
    p.state_at.contains(&store)
}

fn by_id<'a>(els: &'a [Element], id: &str) -> &'a Element {
    els.iter()
        .find(|e| e.attr("id") == Some(id))
        .unwrap_or_else(|| panic!("no #{id}"))
}

/// Plot extent from the axis line: (left, right).
fn axis_extent(els: &[Element]) -> (f64, f64) {
    let axis = by_id(els, "axis-line");
    (axis.num("x1"), axis.num("x2"))
}

/// Text of the `desc` child of element `i`: the store of a tier, the tag of a group.
fn desc(els: &[Element], i: usize) -> Option<&str> {
    els.iter()
        .find(|e| e.name == "desc" && e.parent == Some(i))
        .map(|e| e.text.as_str())
}

/// Index of the element of class `kind` for `tag` inside the band of `store`.
fn group_of(els: &[Element], kind: &str, store: &str, tag: &str) -> Option<usize> {
    (0..els.len()).find(|&i| {
        els[i]
            .attr("class")
            .is_some_and(|c| c.split(' ').next() == Some(kind))
            && desc(els, i) == Some(tag)
            && els[i].parent.is_some_and(|p| desc(els, p) == Some(store))
    })
}

/// Bars of one tag in one tier: (x, y, width, title).
fn bars(els: &[Element], store: &str, tag: &str) -> Vec<(f64, f64, f64, String)> {
    let group =
        group_of(els, "bars", store, tag).unwrap_or_else(|| panic!("no bars of {tag} in {store}"));
    els.iter()
        .enumerate()
        .filter(|(_, e)| e.name == "rect" && e.parent == Some(group))
        .map(|(i, e)| {
            let title = els
                .iter()
                .find(|t| t.name == "title" && t.parent == Some(i))
                .map(|t| t.text.clone())
                .unwrap_or_default();
            (e.num("x"), e.num("y"), e.num("width"), title)
        })
        .collect()
}

fn has_density(els: &[Element], store: &str, tag: &str) -> bool {
    group_of(els, "density", store, tag).is_some()
}

/// Stores of the tier bands, top to bottom.
fn tier_stores(els: &[Element]) -> Vec<String> {
    (0..els.len())
        .filter(|&i| els[i].attr("class") == Some("tier"))
        .filter_map(|i| desc(els, i).map(str::to_owned))
        .collect()
}

#[test]
fn documents_are_well_formed_svg() {
    let empty = simulation(utc(2025, 1, 1), utc(2026, 1, 1), utc(2026, 1, 1), vec![]);
    let sims = [
        ("weekly", weekly()),
        ("hourly", hourly()),
        ("half year", half_year()),
        ("empty", &empty),
    ];
    for (name, sim) in sims {
        let svg = render_svg(sim);
        let els = elements(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let root = &els[0];
        assert_eq!(root.name, "svg", "{name}");
        assert_eq!(
            root.attr("xmlns"),
            Some("http://www.w3.org/2000/svg"),
            "{name}"
        );
        assert_eq!(root.attr("version"), Some("1.1"), "{name}");
        // Standalone: nothing is fetched and nothing runs.
        for forbidden in ["<script", "<image", "href=", "<foreignObject", "url("] {
            assert!(!svg.contains(forbidden), "{name} contains {forbidden}");
        }
    }
}

#[test]
fn text_from_user_json_is_escaped() {
    let at = utc(2026, 1, 1);
    let tag = r#"<b>&"x"'"#;
    let sim = simulation(
        utc(2025, 1, 1),
        at,
        at,
        vec![point(
            utc(2025, 6, 1),
            tag,
            vec![
                span(DataStoreType::VaultStore, utc(2025, 6, 1), None),
                // A store PostgreSQL policies never use still gets its own band, after the
                // vault's (and no archive band, as nothing is archived).
                span(
                    DataStoreType::OperationalStore,
                    utc(2025, 7, 1),
                    Some(utc(2025, 8, 1)),
                ),
            ],
            at,
        )],
    );
    let svg = render_svg(&sim);
    assert!(!svg.contains("<b>"), "raw tag name in the document");
    assert!(svg.contains("&lt;b&gt;&amp;&quot;x&quot;&apos;"));
    let els = parse(&svg);
    let legend = els
        .iter()
        .find(|e| e.attr("class") == Some("legend-item"))
        .unwrap();
    assert_eq!(legend.text, format!("{tag}: 1 point, 1 held"));
    assert_eq!(tier_stores(&els), ["VaultStore", "OperationalStore"]);
    assert_eq!(bars(&els, "OperationalStore", tag).len(), 1);
}

#[test]
fn legend_counts_match_the_points() {
    for sim in [weekly(), hourly()] {
        let mut expected: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for p in &sim.recovery_points {
            let e = expected.entry(p.retention_tag_name.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(!p.state_at.is_empty());
        }
        let els = parse(&render_svg(sim));
        let legend: Vec<&str> = els
            .iter()
            .filter(|e| e.attr("class") == Some("legend-item") && e.text.ends_with(" held"))
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(legend.len(), expected.len(), "{legend:?}");
        for (tag, (n, held)) in expected {
            let line = format!("{tag}: {} points, {} held", thousands(n), thousands(held));
            assert!(
                legend.contains(&line.as_str()),
                "missing {line:?} in {legend:?}"
            );
        }
    }
}

#[test]
fn summary_counts_the_state_as_of() {
    // Seen from mid-window: some points are held, some deleted, some not yet taken.
    let sim = half_year();
    let pending = sim
        .recovery_points
        .iter()
        .filter(|p| p.fate == Fate::NotYetTaken)
        .count();
    let Summary {
        vault_store,
        archive_store,
        deleted,
    } = sim.summary;
    assert!(
        deleted > 0 && pending > 0 && archive_store > 0,
        "fixture covers every state: {:?}, {pending} not yet taken",
        sim.summary
    );
    // The plot counts from the points; the simulator's own summary must agree.
    let count = |store| {
        sim.recovery_points
            .iter()
            .filter(|p| held_in(p, store))
            .count()
    };
    assert_eq!(count(DataStoreType::VaultStore), vault_store);
    assert_eq!(count(DataStoreType::ArchiveStore), archive_store);
    let els = parse(&render_svg(sim));
    assert_eq!(
        by_id(&els, "summary").text,
        format!(
            "As of 2026-04-15: {vault_store} in vault tier, {archive_store} in archive tier, {deleted} deleted, of {} recovery points ({pending} not yet taken)",
            sim.recovery_points.len()
        )
    );
    let title = els.iter().find(|e| e.name == "text").unwrap();
    assert_eq!(
        title.text,
        "pgvault policy simulation: 2026-01-01 to 2026-07-01, as of 2026-04-15"
    );
}

#[test]
fn at_marker_is_drawn_at_the_as_of_instant() {
    let (from, to) = (utc(2020, 1, 1), utc(2030, 1, 1));
    let frac = |t: DateTime<Utc>, end: DateTime<Utc>| {
        (t - from).num_seconds() as f64 / (end - from).num_seconds() as f64
    };
    // (at, end of the only span, expected fraction of the axis)
    let cases = [
        (utc(2024, 7, 1), utc(2021, 1, 1), frac(utc(2024, 7, 1), to)),
        // `at` after `to` stretches the axis to `at`: the marker is at the right edge.
        (utc(2032, 1, 1), utc(2021, 1, 1), 1.0),
        // A span ending after `at` stretches the axis past it.
        (
            utc(2030, 1, 1),
            utc(2040, 1, 1),
            frac(utc(2030, 1, 1), utc(2040, 1, 1)),
        ),
    ];
    for (at, until, expected) in cases {
        let sim = simulation(
            from,
            to,
            at,
            vec![point(
                from,
                "Default",
                vec![span(DataStoreType::VaultStore, from, Some(until))],
                at,
            )],
        );
        let els = parse(&render_svg(&sim));
        let (left, right) = axis_extent(&els);
        let marker = by_id(&els, "at-marker");
        assert_eq!(marker.num("x1"), marker.num("x2"), "marker is vertical");
        let want = left + expected * (right - left);
        assert!(
            (marker.num("x1") - want).abs() <= 0.06,
            "at {at}: x {} want {want}",
            marker.num("x1")
        );
        let label = els.iter().find(|e| e.text.starts_with("as of ")).unwrap();
        assert_eq!(label.text, format!("as of {}", at.format("%Y-%m-%d")));
    }
}

#[test]
fn open_ended_span_runs_to_the_right_edge() {
    let at = utc(2026, 1, 1);
    let sim = simulation(
        utc(2025, 1, 1),
        at,
        at,
        vec![
            // The archive stay ends after `to` and so sets the right edge.
            point(
                utc(2025, 1, 1),
                "Monthly",
                vec![
                    span(
                        DataStoreType::VaultStore,
                        utc(2025, 1, 1),
                        Some(utc(2025, 7, 1)),
                    ),
                    span(
                        DataStoreType::ArchiveStore,
                        utc(2025, 7, 1),
                        Some(utc(2027, 7, 1)),
                    ),
                ],
                at,
            ),
            point(
                utc(2025, 12, 1),
                "Monthly",
                vec![span(DataStoreType::VaultStore, utc(2025, 12, 1), None)],
                at,
            ),
        ],
    );
    let svg = render_svg(&sim);
    let els = parse(&svg);
    let (_, right) = axis_extent(&els);
    let vault = bars(&els, "VaultStore", "Monthly");
    assert_eq!(vault.len(), 2);
    let open = vault
        .iter()
        .find(|b| b.3.ends_with("kept indefinitely"))
        .expect("open-ended bar");
    assert!(
        (open.0 + open.2 - right).abs() < 0.11,
        "open bar ends at {} not {right}",
        open.0 + open.2
    );
    let bounded = vault
        .iter()
        .find(|b| !b.3.ends_with("kept indefinitely"))
        .unwrap();
    assert!(
        bounded.0 + bounded.2 < right - 100.0,
        "bounded bar reaches the edge"
    );
    assert_eq!(
        svg.matches("arrow").count(),
        2,
        "one arrow on the bar, one in the legend"
    );

    // The simulator leaves a span open when the last point outlives its plan: one year of
    // the walkthrough policy seen eleven years on keeps only the one deleted last, 2024's
    // Yearly, in the vault.
    let sim = simulate(
        &fixtures::weekly_policy(),
        utc(2024, 1, 1),
        utc(2025, 1, 1),
        utc(2035, 1, 1),
    )
    .unwrap();
    let els = parse(&render_svg(&sim));
    let (_, right) = axis_extent(&els);
    let kept: Vec<_> = sim
        .recovery_points
        .iter()
        .filter(|p| p.fate == Fate::KeptAsLast)
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].retention_tag_name, "Yearly");
    let open: Vec<_> = bars(&els, "VaultStore", "Yearly")
        .into_iter()
        .filter(|b| b.3.ends_with("kept indefinitely"))
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].3.starts_with("2024-01-07 22:00 UTC Yearly"),
        "{open:?}"
    );
    assert!((open[0].0 + open[0].2 - right).abs() < 0.11, "{open:?}");
}

#[test]
fn overlapping_bars_are_stacked_not_drawn_over_each_other() {
    let els = parse(&render_svg(weekly()));
    for (store, tag) in [
        ("VaultStore", "Default"),
        ("VaultStore", "Monthly"),
        ("VaultStore", "Yearly"),
        ("ArchiveStore", "Monthly"),
    ] {
        let bars = bars(&els, store, tag);
        assert!(bars.len() >= 10, "{store} {tag}: {} bars", bars.len());
        let lanes: BTreeSet<i64> = bars.iter().map(|b| (b.1 * 10.0) as i64).collect();
        assert!(lanes.len() > 1, "{store} {tag} uses one lane");
        for (i, a) in bars.iter().enumerate() {
            for b in &bars[i + 1..] {
                let overlap = a.1 == b.1 && a.0 < b.0 + b.2 && b.0 < a.0 + a.2;
                assert!(!overlap, "{store} {tag}: {} overlaps {}", a.3, b.3);
            }
        }
    }
}

#[test]
fn many_points_switch_to_density_and_stay_small() {
    let sim = hourly();
    assert!(sim.recovery_points.len() > 87_000);
    // A test's own stopwatch: the plot under test reads no clock.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let svg = render_svg(sim);
    let elapsed = started.elapsed();
    assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let els = parse(&svg);
    // The hourly and daily points are too many for bars; the few yearly ones stay bars.
    assert!(has_density(&els, "VaultStore", "Default"));
    assert!(has_density(&els, "VaultStore", "Daily"));
    assert_eq!(bars(&els, "VaultStore", "Yearly").len(), 10);
    assert!(!has_density(&els, "VaultStore", "Yearly"));
    assert!(els.iter().filter(|e| e.name == "rect").count() < 2 * MAX_BARS_PER_TIER + 50);

    // Ten years of weekly points fit as bars.
    let els = parse(&render_svg(weekly()));
    assert!(
        !els.iter()
            .any(|e| e.attr("class").is_some_and(|c| c.starts_with("density ")))
    );
}

#[test]
fn size_stays_bounded_when_every_point_is_kept_forever() {
    // 87,600 overlapping open-ended stays in both tiers: the worst case for lanes.
    let (from, at) = (utc(2025, 1, 1), utc(2035, 1, 1));
    let points = (0..87_600)
        .map(|h| {
            let t = from + TimeDelta::hours(h);
            let tag = ["Default", "Custom A", "Custom B"][(h % 3) as usize];
            point(
                t,
                tag,
                vec![
                    span(DataStoreType::VaultStore, t, None),
                    span(DataStoreType::ArchiveStore, t, None),
                ],
                at,
            )
        })
        .collect();
    let svg = render_svg(&simulation(from, at, at, points));
    assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
    let els = parse(&svg);
    for store in ["VaultStore", "ArchiveStore"] {
        for tag in ["Default", "Custom A", "Custom B"] {
            assert!(has_density(&els, store, tag), "{store} {tag}");
        }
    }
}

#[test]
fn output_is_deterministic() {
    // Simulations run again, independently of the shared ones: any dependence on allocation
    // or hashing order would show as a difference.
    for (again, shared) in [
        (fixtures::weekly_ten_years(), weekly()),
        (fixtures::hourly_ten_years(), hourly()),
    ] {
        assert!(render_svg(&again) == render_svg(shared), "renders differ");
    }
}

#[test]
fn axis_labels_years_for_long_spans_and_months_for_short_ones() {
    let labels = |sim: &Simulation| -> Vec<String> {
        parse(&render_svg(sim))
            .into_iter()
            .filter(|e| e.attr("class") == Some("tick"))
            .map(|e| e.text)
            .collect()
    };
    let years = labels(weekly());
    assert!(years.len() >= 5, "{years:?}");
    assert!(
        years
            .iter()
            .all(|l| l.len() == 4 && l.parse::<i32>().is_ok()),
        "{years:?}"
    );
    assert!(years.contains(&"2030".to_owned()), "{years:?}");

    // Half a year of backups, with Monthly archive stays reaching into 2027.
    let months = labels(half_year());
    assert!(months.contains(&"Mar 2026".to_owned()), "{months:?}");
    assert!(months.contains(&"Jan 2027".to_owned()), "{months:?}");
    assert!(
        months
            .iter()
            .all(|l| l.len() == 8 && (l.ends_with(" 2026") || l.ends_with(" 2027"))),
        "{months:?}"
    );
}

#[test]
fn archive_band_appears_only_when_archive_is_used() {
    let stores = |sim: &Simulation| tier_stores(&parse(&render_svg(sim)));
    assert_eq!(stores(weekly()), ["VaultStore", "ArchiveStore"]);
    let at = utc(2026, 1, 1);
    let vault_only = simulation(
        utc(2025, 1, 1),
        at,
        at,
        vec![point(
            utc(2025, 1, 1),
            "Weekly",
            vec![span(
                DataStoreType::VaultStore,
                utc(2025, 1, 1),
                Some(utc(2025, 3, 1)),
            )],
            at,
        )],
    );
    assert_eq!(stores(&vault_only), ["VaultStore"]);
    // The vault band is drawn even when empty, and says so.
    let empty = simulation(utc(2025, 1, 1), at, at, vec![]);
    let els = parse(&render_svg(&empty));
    assert_eq!(tier_stores(&els), ["VaultStore"]);
    assert!(els.iter().any(|e| e.text == "nothing stored in this tier"));
}

#[test]
fn too_many_lanes_switch_the_costliest_tag_to_density() {
    // Few bars, many lanes: 200 Yearly-like stays all overlapping, beside 20 Monthly stays
    // that need 20 lanes. Only the tag that breaks the lane budget is aggregated.
    let (from, at) = (utc(2025, 1, 1), utc(2035, 1, 1));
    let vault = |t: DateTime<Utc>, days| {
        vec![span(
            DataStoreType::VaultStore,
            t,
            Some(t + TimeDelta::days(days)),
        )]
    };
    let mut points: Vec<SimulatedPoint> = (0..200)
        .map(|d| {
            let t = from + TimeDelta::days(d);
            point(t, "Keep", vault(t, 3000), at)
        })
        .collect();
    points.extend((0..20).map(|m| {
        let t = from + TimeDelta::days(300 + m * 30);
        point(t, "Monthly", vault(t, 700), at)
    }));
    points.sort_by_key(|p| p.recovery_point_time);
    let els = parse(&render_svg(&simulation(from, at, at, points)));
    assert!(has_density(&els, "VaultStore", "Keep"));
    assert!(!has_density(&els, "VaultStore", "Monthly"));
    assert_eq!(bars(&els, "VaultStore", "Monthly").len(), 20);
}

#[test]
fn too_many_bars_switch_the_costliest_tag_to_density() {
    // Many bars, few lanes: 2,000 one-hour stays spread over ten years would fit in a handful
    // of lanes but break the bar budget; the ten long Yearly stays beside them stay bars.
    let (from, at) = (utc(2025, 1, 1), utc(2035, 1, 1));
    let stay = |t: DateTime<Utc>, len| vec![span(DataStoreType::VaultStore, t, Some(t + len))];
    let mut points: Vec<SimulatedPoint> = (0..2_000)
        .map(|i| {
            let t = from + TimeDelta::hours(i * 43);
            point(t, "Default", stay(t, TimeDelta::hours(1)), at)
        })
        .collect();
    points.extend((0..10).map(|y| {
        let t = utc(2025 + y, 1, 1);
        point(t, "Yearly", stay(t, TimeDelta::days(3650)), at)
    }));
    points.sort_by_key(|p| p.recovery_point_time);
    let sim = simulation(from, at, at, points);
    // The premise: the lanes alone would fit.
    let scale = Scale::for_simulation(&sim);
    let extents: Vec<(f64, f64)> = sim
        .recovery_points
        .iter()
        .filter(|p| p.retention_tag_name == "Default")
        .map(|p| {
            let s = &p.data_stores[0];
            let a = scale.x_of(s.from);
            (a, scale.x_of(s.until.unwrap()).max(a + MIN_BAR_PX))
        })
        .collect();
    let lanes = pack_lanes(&extents, MAX_LANES_PER_TIER).expect("Default fits in lanes");
    assert!(
        lanes.count + 10 <= MAX_LANES_PER_TIER,
        "{} lanes",
        lanes.count
    );
    assert!(extents.len() + 10 > MAX_BARS_PER_TIER);

    let els = parse(&render_svg(&sim));
    assert!(has_density(&els, "VaultStore", "Default"));
    assert!(!has_density(&els, "VaultStore", "Yearly"));
    assert_eq!(bars(&els, "VaultStore", "Yearly").len(), 10);
}
