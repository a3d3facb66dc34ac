//! SVG plot of a backup-policy simulation, for `pgvault backup-policy simulate --plot FILE.svg`
//! and the console's policy page (it lives in the model, pure, so both draw the same picture).
//!
//! The plot answers one question at a glance: over the simulated years, what does the policy
//! keep, in which tier, and for how long? Top to bottom it shows a title and a summary of the
//! state at the "as of" instant, a legend of retention tags with counts, a row of recovery-point
//! marks on the time axis, one band per tier (vault, then archive) holding one thin bar per
//! recovery point's stay in that tier, and the time axis. A vertical line marks the "as of"
//! instant.
//!
//! Key decisions, with their reasons:
//!
//! - **Pure and deterministic.** [`render_svg`] takes the simulation and returns the document;
//!   it reads no clock and iterates only ordered collections (`BTreeMap`, sorted `Vec`s), so
//!   the same input gives a byte-identical SVG, which makes the output diffable and testable.
//! - **Plan, then draw.** [`render_svg`] first builds a `Plot`: the time scale, the tag
//!   styles, and per tier the lanes or density columns of every tag. The writers then only
//!   turn that plan into text, each in a small function (title, legend, grid and axis, marks,
//!   bands, bars, density, marker).
//! - **Bars are grouped by tag inside a tier**, longest-lived tags first (Yearly, Monthly,
//!   Weekly, Daily, Hourly, custom tags alphabetically, Default last), each group packed into
//!   its own lanes. Mixing tags in shared lanes gives a confetti of colours; grouped, each tag
//!   reads as a staircase whose height is how many of its points the tier holds.
//! - **Aggregation is per tag, largest first.** A tier may use at most
//!   [`MAX_LANES_PER_TIER`] lanes and [`MAX_BARS_PER_TIER`] bars. While it is over either
//!   budget, the tag group that costs the most switches from bars to a density row: a filled
//!   step area whose height at each pixel column is the number of that tag's points the tier
//!   holds then (a sweep over the span endpoints), scaled to the group's own maximum, which is
//!   printed. So ten years of hourly Default points become one area, while the ten Yearly bars
//!   of the same policy stay individually visible. The size of the document is then bounded by
//!   the budgets and the plot width, not by the number of points.
//! - **Marks are de-duplicated per pixel column**, per tag and per state (held or not at
//!   "as of"): 87,600 hourly marks draw as at most a few thousand tick segments in one path per
//!   tag and state.
//! - **Rows:** the vault band is always drawn (every recovery point starts there, and an empty
//!   band says so); the archive band only when some point ever has an `ArchiveStore` span, so
//!   a policy without archiving shows no empty archive row. Any other data store type gets its
//!   own band after those two.
//! - **Text from user JSON is escaped** (`&`, `<`, `>`, `"`, `'`), and characters XML 1.0
//!   forbids are replaced, so a tag name cannot break the document.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Timelike, Utc};

use crate::simulate::Simulation;

/// Most bar lanes one tier band may use before its costliest tag switches to a density row.
pub const MAX_LANES_PER_TIER: usize = 60;
/// Most bars one tier band may draw; bounds the document size whatever the lane count.
pub const MAX_BARS_PER_TIER: usize = 1500;

const VAULT: &str = "VaultStore";
const ARCHIVE: &str = "ArchiveStore";

const WIDTH: f64 = 1200.0;
const PLOT_LEFT: f64 = 170.0;
const PLOT_RIGHT: f64 = WIDTH - 40.0;
const MARGIN: f64 = 16.0;
/// Two bars in one lane keep at least this gap, so that consecutive stays never merge into
/// what looks like one long bar.
const LANE_GAP_PX: f64 = 2.0;
/// A stay shorter than a pixel is still drawn, one pixel wide.
const MIN_BAR_PX: f64 = 1.0;
const MARKS_HEIGHT: f64 = 40.0;
const BAND_HEADER: f64 = 22.0;
const BAND_PAD: f64 = 10.0;
const BAND_GAP: f64 = 12.0;
const GROUP_GAP: f64 = 8.0;
const MIN_GROUP_HEIGHT: f64 = 13.0;
const DENSITY_HEIGHT: f64 = 34.0;
const LEGEND_ROW: f64 = 20.0;

const INK: &str = "#1f2933";
const MUTED: &str = "#616e7c";
const AT_COLOUR: &str = "#c62828";

/// Renders the simulation as a standalone SVG 1.1 document.
pub fn render_svg(sim: &Simulation) -> String {
    let plot = Plot::build(sim);
    let mut out = String::with_capacity(64 * 1024);
    plot.write(&mut out)
        .expect("formatting into a String cannot fail");
    out
}

// ---------------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------------

/// Maps instants (Unix seconds) to x coordinates over the plot width.
#[derive(Debug, Clone, Copy)]
struct Scale {
    t0: i64,
    t1: i64,
    x0: f64,
    x1: f64,
}

impl Scale {
    /// Spans from the earliest of `from`, `at` and any point or span start to the latest of
    /// `to`, `at` and any span end, so that every bounded stay fits and open-ended ones run to
    /// the right edge.
    fn for_simulation(sim: &Simulation) -> Scale {
        let mut t0 = sim.from.min(sim.at);
        let mut t1 = sim.to.max(sim.at);
        for p in &sim.recovery_points {
            t0 = t0.min(p.recovery_point_time);
            t1 = t1.max(p.recovery_point_time);
            for s in &p.data_stores {
                t0 = t0.min(s.from);
                t1 = t1.max(s.from);
                if let Some(u) = s.until {
                    t1 = t1.max(u);
                }
            }
        }
        let (t0, mut t1) = (t0.timestamp(), t1.timestamp());
        if t1 <= t0 {
            // A zero-length window still needs a non-degenerate axis.
            t1 = t0 + 86_400;
        }
        Scale {
            t0,
            t1,
            x0: PLOT_LEFT,
            x1: PLOT_RIGHT,
        }
    }

    fn x(&self, secs: i64) -> f64 {
        self.x0 + (secs - self.t0) as f64 / (self.t1 - self.t0) as f64 * (self.x1 - self.x0)
    }

    fn x_of(&self, t: DateTime<Utc>) -> f64 {
        self.x(t.timestamp())
    }

    /// End of a stay: open-ended stays run to the right edge.
    fn x_until(&self, until: Option<i64>) -> f64 {
        until.map_or(self.x1, |u| self.x(u))
    }

    /// One density column per pixel of plot width.
    fn columns(&self) -> usize {
        (self.x1 - self.x0).round() as usize
    }

    /// Instant (Unix seconds, fractional) where density column `c` ends.
    fn column_end(&self, c: usize) -> f64 {
        self.t0 as f64 + (c + 1) as f64 * (self.t1 - self.t0) as f64 / self.columns() as f64
    }
}

/// A retention tag as drawn: colour, and counts for the legend.
#[derive(Debug)]
struct TagStyle<'a> {
    name: &'a str,
    colour: &'static str,
    points: usize,
    held: usize,
}

/// Fixed colours for the well-known tags, so that every plot reads the same way.
fn known_colour(tag: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 6] = [
        ("Yearly", "#e8590c"),
        ("Monthly", "#2b8a3e"),
        ("Weekly", "#1c7ed6"),
        ("Daily", "#0b9aa8"),
        ("Hourly", "#a08900"),
        ("Default", "#868e96"),
    ];
    KNOWN
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(tag))
        .map(|(_, colour)| *colour)
}

/// Colours for custom tags, handed out in the tags' sorted order so that two custom tags of
/// one plot never share a colour until the palette runs out.
const OTHER_COLOURS: [&str; 6] = [
    "#7048e8", "#d6336c", "#8d6e63", "#3b5bdb", "#5c940d", "#c2255c",
];

/// Display order: longest-lived tags first, Default (the shortest, most numerous) last.
fn tag_rank(tag: &str) -> (u8, &str) {
    let order = ["Yearly", "Monthly", "Weekly", "Daily", "Hourly"];
    if let Some(i) = order.iter().position(|n| n.eq_ignore_ascii_case(tag)) {
        (i as u8, tag)
    } else if tag.eq_ignore_ascii_case("Default") {
        (7, tag)
    } else {
        (6, tag)
    }
}

fn tag_styles(sim: &Simulation) -> Vec<TagStyle<'_>> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for p in &sim.recovery_points {
        let entry = counts.entry(p.retention_tag_name.as_str()).or_default();
        entry.0 += 1;
        if !p.state_at.is_empty() {
            entry.1 += 1;
        }
    }
    let mut names: Vec<&str> = counts.keys().copied().collect();
    names.sort_by_key(|n| tag_rank(n));
    let mut next_other = 0;
    names
        .into_iter()
        .map(|name| {
            let colour = known_colour(name).unwrap_or_else(|| {
                let c = OTHER_COLOURS[next_other % OTHER_COLOURS.len()];
                next_other += 1;
                c
            });
            let (points, held) = counts[name];
            TagStyle {
                name,
                colour,
                points,
                held,
            }
        })
        .collect()
}

/// One recovery point's stay in one tier.
#[derive(Debug, Clone, Copy)]
struct Stay {
    from: i64,
    until: Option<i64>,
    point: usize,
}

/// How a tag group is drawn inside a tier band.
#[derive(Debug)]
enum Shape {
    /// One bar per stay, in its lane.
    Bars(Lanes),
    /// Held count per pixel column, and its maximum.
    Density { columns: Vec<u32>, max: u32 },
}

/// The stays of one tag in one tier.
#[derive(Debug)]
struct Group {
    tag: usize,
    stays: Vec<Stay>,
    shape: Shape,
}

/// One tier band.
#[derive(Debug)]
struct Tier<'a> {
    store: &'a str,
    groups: Vec<Group>,
    /// Vertical distance between lanes, chosen so that the band stays compact when busy and
    /// airy when not.
    pitch: f64,
}

impl Tier<'_> {
    fn label(&self) -> String {
        match self.store {
            VAULT => "Vault tier".to_owned(),
            ARCHIVE => "Archive tier".to_owned(),
            other => other.to_owned(),
        }
    }

    fn bar_height(&self) -> f64 {
        if self.pitch >= 6.0 {
            self.pitch - 2.0
        } else {
            self.pitch - 1.0
        }
    }

    fn group_height(&self, g: &Group) -> f64 {
        match &g.shape {
            Shape::Bars(lanes) => (lanes.count as f64 * self.pitch).max(MIN_GROUP_HEIGHT),
            Shape::Density { .. } => DENSITY_HEIGHT,
        }
    }

    fn height(&self) -> f64 {
        if self.groups.is_empty() {
            return BAND_HEADER + 18.0 + BAND_PAD;
        }
        let groups: f64 = self.groups.iter().map(|g| self.group_height(g)).sum();
        BAND_HEADER + groups + GROUP_GAP * (self.groups.len() - 1) as f64 + BAND_PAD
    }
}

/// Lanes of a group's bars: `of_stay[i]` is the lane of the group's `i`th stay.
#[derive(Debug)]
struct Lanes {
    of_stay: Vec<usize>,
    count: usize,
}

/// Assigns each stay, in order of start, the first lane that is free again [`LANE_GAP_PX`]
/// before the stay starts. Returns `None` as soon as more than `max_lanes` would be needed,
/// which also keeps the work linear in the number of stays.
fn pack_lanes(extents: &[(f64, f64)], max_lanes: usize) -> Option<Lanes> {
    let mut ends: Vec<f64> = Vec::new();
    let mut of_stay = Vec::with_capacity(extents.len());
    for &(start, end) in extents {
        match ends.iter().position(|&e| e + LANE_GAP_PX <= start) {
            Some(lane) => {
                ends[lane] = end;
                of_stay.push(lane);
            }
            None if ends.len() == max_lanes => return None,
            None => {
                ends.push(end);
                of_stay.push(ends.len() - 1);
            }
        }
    }
    Some(Lanes {
        count: ends.len(),
        of_stay,
    })
}

/// Number of stays held in each pixel column: the maximum reached inside the column, found by
/// sweeping the stays' start and end instants. Ends sort before starts at the same instant,
/// so back-to-back stays never count twice.
fn density_columns(stays: &[Stay], scale: &Scale) -> Vec<u32> {
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(stays.len() * 2);
    for s in stays {
        events.push((s.from, 1));
        if let Some(u) = s.until {
            events.push((u, -1));
        }
    }
    events.sort_unstable();
    let mut columns = Vec::with_capacity(scale.columns());
    let (mut held, mut next) = (0i64, 0usize);
    for c in 0..scale.columns() {
        let end = scale.column_end(c);
        let mut peak = held;
        while next < events.len() && (events[next].0 as f64) < end {
            held += i64::from(events[next].1);
            peak = peak.max(held);
            next += 1;
        }
        columns.push(u32::try_from(peak.max(0)).unwrap_or(u32::MAX));
    }
    columns
}

/// A tag group of a tier while its shape is being chosen.
struct Candidate {
    tag: usize,
    stays: Vec<Stay>,
    /// `None` when the group alone needs more lanes than a tier may have.
    lanes: Option<Lanes>,
    dense: bool,
}

impl Candidate {
    /// What the group costs the band as bars: (lanes, bars), lanes maximal when unpackable.
    fn cost(&self) -> (usize, usize) {
        (
            self.lanes.as_ref().map_or(usize::MAX, |l| l.count),
            self.stays.len(),
        )
    }
}

/// Lays out one tier: packs each tag group, then switches the costliest groups to density
/// rows until the band fits its lane and bar budgets.
fn plan_tier<'a>(store: &'a str, by_tag: BTreeMap<usize, Vec<Stay>>, scale: &Scale) -> Tier<'a> {
    let mut candidates: Vec<Candidate> = by_tag
        .into_iter()
        .map(|(tag, mut stays)| {
            stays.sort_by_key(|s| (s.from, s.point));
            let extents: Vec<(f64, f64)> = stays
                .iter()
                .map(|s| {
                    let a = scale.x(s.from);
                    (a, scale.x_until(s.until).max(a + MIN_BAR_PX))
                })
                .collect();
            let lanes = pack_lanes(&extents, MAX_LANES_PER_TIER);
            Candidate {
                tag,
                stays,
                lanes,
                dense: false,
            }
        })
        .collect();

    loop {
        let (lanes, bars) =
            candidates
                .iter()
                .filter(|c| !c.dense)
                .fold((0usize, 0usize), |(l, b), c| {
                    let (cl, cb) = c.cost();
                    (l.saturating_add(cl), b + cb)
                });
        let lanes_fit = lanes <= MAX_LANES_PER_TIER;
        if lanes_fit && bars <= MAX_BARS_PER_TIER {
            break;
        }
        // Over the lane budget, the group with the most lanes goes dense; over the bar
        // budget, the one with the most bars. Ties go to the first in display order.
        let key = |c: &Candidate| {
            let (l, b) = c.cost();
            if lanes_fit { (b, l) } else { (l, b) }
        };
        let mut pick: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate().filter(|(_, c)| !c.dense) {
            if pick.is_none_or(|p| key(c) > key(&candidates[p])) {
                pick = Some(i);
            }
        }
        match pick {
            Some(i) => candidates[i].dense = true,
            None => break,
        }
    }

    let mut total_lanes = 0;
    let groups: Vec<Group> = candidates
        .into_iter()
        .map(|c| {
            let shape = match c.lanes {
                Some(lanes) if !c.dense => {
                    total_lanes += lanes.count;
                    Shape::Bars(lanes)
                }
                _ => {
                    let columns = density_columns(&c.stays, scale);
                    let max = columns.iter().copied().max().unwrap_or(0);
                    Shape::Density { columns, max }
                }
            };
            Group {
                tag: c.tag,
                stays: c.stays,
                shape,
            }
        })
        .collect();
    // Busy bands get thinner lanes, quiet ones thicker bars, within readable limits.
    let pitch = if total_lanes == 0 {
        8.0
    } else {
        (170.0 / total_lanes as f64).clamp(4.0, 9.0)
    };
    Tier {
        store,
        groups,
        pitch,
    }
}

/// Tiers in display order: vault always, archive when used, any other store after them.
fn plan_tiers<'a>(sim: &'a Simulation, tags: &[TagStyle<'_>], scale: &Scale) -> Vec<Tier<'a>> {
    let tag_index: BTreeMap<&str, usize> =
        tags.iter().enumerate().map(|(i, t)| (t.name, i)).collect();
    let mut by_store: BTreeMap<&str, BTreeMap<usize, Vec<Stay>>> = BTreeMap::new();
    by_store.insert(VAULT, BTreeMap::new());
    for (point, p) in sim.recovery_points.iter().enumerate() {
        let tag = tag_index[p.retention_tag_name.as_str()];
        for s in &p.data_stores {
            by_store
                .entry(s.data_store_type.as_str())
                .or_default()
                .entry(tag)
                .or_default()
                .push(Stay {
                    from: s.from.timestamp(),
                    until: s.until.map(|u| u.timestamp()),
                    point,
                });
        }
    }
    let mut stores: Vec<(&str, BTreeMap<usize, Vec<Stay>>)> = by_store.into_iter().collect();
    stores.sort_by_key(|(store, _)| match *store {
        VAULT => (0, *store),
        ARCHIVE => (1, *store),
        other => (2, other),
    });
    stores
        .into_iter()
        .map(|(store, by_tag)| plan_tier(store, by_tag, scale))
        .collect()
}

/// Counts at the "as of" instant, for the summary line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    vault: usize,
    archive: usize,
    deleted: usize,
    not_yet_taken: usize,
}

fn summarise(sim: &Simulation) -> Summary {
    let mut s = Summary::default();
    for p in &sim.recovery_points {
        if p.recovery_point_time > sim.at {
            s.not_yet_taken += 1;
        } else if p.state_at.is_empty() {
            s.deleted += 1;
        }
        s.vault += usize::from(p.state_at.iter().any(|t| t.as_str() == VAULT));
        s.archive += usize::from(p.state_at.iter().any(|t| t.as_str() == ARCHIVE));
    }
    s
}

/// One entry of the legend: a swatch and its text.
#[derive(Debug)]
enum Swatch {
    Tag(usize),
    AtLine,
    Marks,
    OpenEnded(usize),
}

/// Everything needed to draw, decided before the first byte is written.
struct Plot<'a> {
    sim: &'a Simulation,
    scale: Scale,
    tags: Vec<TagStyle<'a>>,
    tiers: Vec<Tier<'a>>,
    legend: Vec<Vec<(Swatch, String)>>,
}

impl<'a> Plot<'a> {
    fn build(sim: &'a Simulation) -> Plot<'a> {
        let scale = Scale::for_simulation(sim);
        let tags = tag_styles(sim);
        let tiers = plan_tiers(sim, &tags, &scale);
        let legend = legend_rows(sim, &tags);
        Plot {
            sim,
            scale,
            tags,
            tiers,
            legend,
        }
    }

    fn marks_top(&self) -> f64 {
        let legend_top = 70.0;
        legend_top + self.legend.len() as f64 * LEGEND_ROW + 24.0
    }

    fn axis_y(&self) -> f64 {
        let bands: f64 = self.tiers.iter().map(|t| t.height() + BAND_GAP).sum();
        self.marks_top() + MARKS_HEIGHT + BAND_GAP + bands
    }

    fn height(&self) -> f64 {
        self.axis_y() + 62.0
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        self.write_header(out)?;
        self.write_title(out)?;
        self.write_legend(out)?;
        self.write_grid_and_axis(out)?;
        self.write_marks(out)?;
        let mut y = self.marks_top() + MARKS_HEIGHT + BAND_GAP;
        for tier in &self.tiers {
            self.write_tier(out, tier, y)?;
            y += tier.height() + BAND_GAP;
        }
        self.write_at_marker(out)?;
        self.write_footnote(out)?;
        out.write_str("</svg>\n")
    }
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

impl Plot<'_> {
    fn write_header(&self, out: &mut String) -> fmt::Result {
        let h = self.height();
        writeln!(
            out,
            r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>"#
        )?;
        writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">"#,
            w = num(WIDTH),
            h = num(h),
        )?;
        writeln!(out, "<title>{}</title>", esc(&self.title_text()))?;
        out.write_str("<style type=\"text/css\">\n")?;
        for (i, tag) in self.tags.iter().enumerate() {
            writeln!(out, ".f{i}{{fill:{c}}} .s{i}{{stroke:{c}}}", c = tag.colour)?;
        }
        writeln!(out, ".band{{fill:#f8f9fa;stroke:#dee2e6;stroke-width:1}}")?;
        writeln!(out, ".lbl{{fill:{INK};font-weight:bold;font-size:12.5px}}")?;
        writeln!(out, ".sub{{fill:{MUTED};font-size:10px}}")?;
        writeln!(out, ".bars rect{{opacity:0.9}}")?;
        out.write_str("</style>\n")?;
        writeln!(
            out,
            r##"<rect width="{}" height="{}" fill="#ffffff"/>"##,
            num(WIDTH),
            num(h)
        )
    }

    fn title_text(&self) -> String {
        format!(
            "pgvault policy simulation: {} to {}, as of {}",
            instant(self.sim.from),
            instant(self.sim.to),
            instant(self.sim.at)
        )
    }

    fn write_title(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            r#"<text x="{MARGIN}" y="30" font-size="17" font-weight="bold" fill="{INK}">{}</text>"#,
            esc(&self.title_text())
        )?;
        let s = summarise(self.sim);
        let mut line = format!(
            "As of {}: {} in vault tier, {} in archive tier, {} deleted, of {}",
            instant(self.sim.at),
            thousands(s.vault),
            thousands(s.archive),
            thousands(s.deleted),
            count(self.sim.recovery_points.len(), "recovery point"),
        );
        if s.not_yet_taken > 0 {
            write!(line, " ({} not yet taken)", thousands(s.not_yet_taken))?;
        }
        writeln!(
            out,
            r#"<text id="summary" x="{MARGIN}" y="52" font-size="12.5" fill="{MUTED}">{}</text>"#,
            esc(&line)
        )
    }

    fn write_legend(&self, out: &mut String) -> fmt::Result {
        out.write_str("<g id=\"legend\">\n")?;
        let mut y = 70.0;
        for row in &self.legend {
            let mut x = MARGIN;
            for (swatch, text) in row {
                self.write_swatch(out, swatch, x, y)?;
                writeln!(
                    out,
                    r#"<text class="legend-item" x="{}" y="{}" fill="{INK}">{}</text>"#,
                    num(x + 18.0),
                    num(y + 10.0),
                    esc(text)
                )?;
                x += legend_item_width(text);
            }
            y += LEGEND_ROW;
        }
        out.write_str("</g>\n")
    }

    fn write_swatch(&self, out: &mut String, swatch: &Swatch, x: f64, y: f64) -> fmt::Result {
        match swatch {
            Swatch::Tag(i) => writeln!(
                out,
                r#"<rect class="f{i}" x="{}" y="{}" width="12" height="12" rx="2"/>"#,
                num(x),
                num(y)
            ),
            Swatch::AtLine => writeln!(
                out,
                r#"<path d="M{} {}v14" stroke="{AT_COLOUR}" stroke-width="2"/>"#,
                num(x + 6.0),
                num(y - 1.0)
            ),
            Swatch::Marks => writeln!(
                out,
                r#"<path d="M{} {}v14" stroke="{INK}" stroke-width="1.5"/><path d="M{} {}v8" stroke="{INK}" stroke-opacity="0.45"/>"#,
                num(x + 3.0),
                num(y - 1.0),
                num(x + 9.0),
                num(y + 6.0)
            ),
            Swatch::OpenEnded(i) => {
                writeln!(
                    out,
                    r#"<rect class="f{i}" x="{}" y="{}" width="8" height="5"/>"#,
                    num(x),
                    num(y + 3.5)
                )?;
                write_arrow(out, *i, x + 8.0, y + 3.5, 5.0)
            }
        }
    }

    /// Year (or month, day, hour) grid lines through every row, the axis line, ticks and labels.
    fn write_grid_and_axis(&self, out: &mut String) -> fmt::Result {
        let top = self.marks_top();
        let axis = self.axis_y();
        let ticks = axis_ticks(&self.scale);
        out.write_str("<g id=\"grid\">\n")?;
        for (secs, label) in &ticks {
            let colour = if label.is_some() {
                "#dfe3e8"
            } else {
                "#eef0f3"
            };
            writeln!(
                out,
                r#"<path d="M{} {}V{}" stroke="{colour}"/>"#,
                num(self.scale.x(*secs)),
                num(top),
                num(axis)
            )?;
        }
        out.write_str("</g>\n<g id=\"axis\">\n")?;
        writeln!(
            out,
            r#"<line id="axis-line" x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{INK}" stroke-width="1"/>"#,
            num(self.scale.x0),
            num(self.scale.x1),
            y = num(axis)
        )?;
        for (secs, label) in &ticks {
            let x = num(self.scale.x(*secs));
            match label {
                Some(label) => writeln!(
                    out,
                    r#"<path d="M{x} {}v5" stroke="{INK}"/><text class="tick" x="{x}" y="{}" text-anchor="middle" fill="{INK}">{}</text>"#,
                    num(axis),
                    num(axis + 18.0),
                    esc(label)
                )?,
                None => writeln!(out, r#"<path d="M{x} {}v3" stroke="{MUTED}"/>"#, num(axis))?,
            }
        }
        out.write_str("</g>\n")
    }

    /// The recovery-point row: a tick per point at its creation time, tall and solid when the
    /// point is still held at "as of", short and faint when it is deleted by then. Ticks that
    /// land on the same pixel column (same tag and state) are drawn once.
    fn write_marks(&self, out: &mut String) -> fmt::Result {
        let top = self.marks_top();
        let mid = top + MARKS_HEIGHT / 2.0;
        writeln!(
            out,
            r#"<text class="lbl" x="{MARGIN}" y="{}">Recovery points</text>"#,
            num(mid - 1.0)
        )?;
        writeln!(
            out,
            r#"<text class="sub" x="{MARGIN}" y="{}">tall: held, short: not held</text>"#,
            num(mid + 12.0)
        )?;
        // The backup window, where the schedule fires.
        let (wx0, wx1) = (self.scale.x_of(self.sim.from), self.scale.x_of(self.sim.to));
        writeln!(
            out,
            r##"<rect id="window" x="{}" y="{}" width="{}" height="{}" fill="#eef2f7"/>"##,
            num(wx0),
            num(top),
            num((wx1 - wx0).max(0.0)),
            num(MARKS_HEIGHT)
        )?;
        let mut columns: BTreeSet<(bool, usize, i64)> = BTreeSet::new();
        let tag_index: BTreeMap<&str, usize> = self
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name, i))
            .collect();
        for p in &self.sim.recovery_points {
            let x = self.scale.x_of(p.recovery_point_time).round() as i64;
            columns.insert((
                !p.state_at.is_empty(),
                tag_index[p.retention_tag_name.as_str()],
                x,
            ));
        }
        out.write_str("<g id=\"marks\">\n")?;
        let mut current: Option<(bool, usize)> = None;
        for (held, tag, x) in &columns {
            if current != Some((*held, *tag)) {
                if current.is_some() {
                    out.write_str("\"/>\n")?;
                }
                current = Some((*held, *tag));
                let style = if *held {
                    r#"stroke-width="1.5""#
                } else {
                    r#"stroke-width="1" stroke-opacity="0.35""#
                };
                let kind = if *held { "held" } else { "deleted" };
                write!(out, r#"<path class="s{tag} {kind}" {style} d=""#)?;
            }
            if *held {
                write!(out, "M{x} {}v{}", num(mid - 14.0), num(28.0))?;
            } else {
                write!(out, "M{x} {}v{}", num(mid - 5.0), num(10.0))?;
            }
        }
        if current.is_some() {
            out.write_str("\"/>\n")?;
        }
        out.write_str("</g>\n")
    }

    /// A tier band: background, tier label, then each tag group as bars or a density row.
    fn write_tier(&self, out: &mut String, tier: &Tier<'_>, top: f64) -> fmt::Result {
        let held = self
            .sim
            .recovery_points
            .iter()
            .filter(|p| p.state_at.iter().any(|s| s.as_str() == tier.store))
            .count();
        // `desc` (not a data attribute, which SVG 1.1 lacks) names the store for tools and tests.
        writeln!(out, r#"<g class="tier"><desc>{}</desc>"#, esc(tier.store))?;
        writeln!(
            out,
            r#"<rect class="band" x="{}" y="{}" width="{}" height="{}"/>"#,
            num(MARGIN / 2.0),
            num(top),
            num(self.scale.x1 + 24.0 - MARGIN / 2.0),
            num(tier.height())
        )?;
        writeln!(
            out,
            r#"<text class="lbl" x="{MARGIN}" y="{}">{}</text><text class="sub" x="{}" y="{}">{} held as of {}</text>"#,
            num(top + 15.0),
            esc(&tier.label()),
            num(self.scale.x0 + 4.0),
            num(top + 14.0),
            thousands(held),
            esc(&instant(self.sim.at))
        )?;
        if tier.groups.is_empty() {
            return writeln!(
                out,
                r#"<text class="sub" x="{}" y="{}">nothing stored in this tier</text></g>"#,
                num(self.scale.x0 + 4.0),
                num(top + BAND_HEADER + 10.0)
            );
        }
        let mut y = top + BAND_HEADER;
        for group in &tier.groups {
            let h = tier.group_height(group);
            match &group.shape {
                Shape::Bars(lanes) => self.write_bars(out, tier, group, &lanes.of_stay, y)?,
                Shape::Density { columns, max } => {
                    self.write_density(out, group, columns, *max, y, h)?
                }
            }
            y += h + GROUP_GAP;
        }
        out.write_str("</g>\n")
    }

    fn write_group_label(
        &self,
        out: &mut String,
        group: &Group,
        y: f64,
        note: &str,
    ) -> fmt::Result {
        let tag = &self.tags[group.tag];
        writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="10.5" font-weight="bold" class="f{}">{}</text>"#,
            num(self.scale.x0 - 8.0),
            num(y + 9.0),
            group.tag,
            esc(tag.name)
        )?;
        if !note.is_empty() {
            writeln!(
                out,
                r#"<text class="sub" x="{}" y="{}" text-anchor="end">{}</text>"#,
                num(self.scale.x0 - 8.0),
                num(y + 21.0),
                esc(note)
            )?;
        }
        Ok(())
    }

    /// One bar per stay, in its lane; open-ended stays run to the right edge and end in an
    /// arrow. Each bar carries a tooltip with the point and its dates.
    fn write_bars(
        &self,
        out: &mut String,
        tier: &Tier<'_>,
        group: &Group,
        lanes: &[usize],
        top: f64,
    ) -> fmt::Result {
        self.write_group_label(out, group, top, "")?;
        let tag = &self.tags[group.tag];
        let h = tier.bar_height();
        writeln!(
            out,
            r#"<g class="bars f{}"><desc>{}</desc>"#,
            group.tag,
            esc(tag.name)
        )?;
        for (stay, lane) in group.stays.iter().zip(lanes) {
            let x = self.scale.x(stay.from);
            let end = self.scale.x_until(stay.until).max(x + MIN_BAR_PX);
            let y = top + *lane as f64 * tier.pitch;
            let point = &self.sim.recovery_points[stay.point];
            let until = stay.until.map_or_else(
                || "kept indefinitely".to_owned(),
                |u| instant(Utc.timestamp_opt(u, 0).single().unwrap_or_default()),
            );
            writeln!(
                out,
                r#"<rect x="{}" y="{}" width="{}" height="{}"><title>{} {}: {} {} to {}</title></rect>"#,
                num(x),
                num(y),
                num(end - x),
                num(h),
                instant(point.recovery_point_time),
                esc(tag.name),
                esc(&tier.label()),
                instant(Utc.timestamp_opt(stay.from, 0).single().unwrap_or_default()),
                until
            )?;
            if stay.until.is_none() {
                write_arrow(out, group.tag, end, y, h)?;
            }
        }
        out.write_str("</g>\n")
    }

    /// The number of the tag's points held in the tier, per pixel column, as a filled step
    /// area scaled to its maximum.
    fn write_density(
        &self,
        out: &mut String,
        group: &Group,
        columns: &[u32],
        max: u32,
        top: f64,
        h: f64,
    ) -> fmt::Result {
        let note = format!(
            "{} points, up to {} held",
            thousands(group.stays.len()),
            thousands(max as usize)
        );
        self.write_group_label(out, group, top, &note)?;
        let base = top + h;
        let y_of = |v: u32| {
            if max == 0 {
                base
            } else {
                base - f64::from(v) / f64::from(max) * (h - 2.0)
            }
        };
        writeln!(
            out,
            r##"<path d="M{x0} {base}H{x1}" stroke="#ced4da" stroke-width="1"/>"##,
            x0 = num(self.scale.x0),
            x1 = num(self.scale.x1),
            base = num(base)
        )?;
        write!(
            out,
            r#"<path class="density f{}" fill-opacity="0.75" d="M{} {}"#,
            group.tag,
            num(self.scale.x0),
            num(base)
        )?;
        let mut c = 0;
        while c < columns.len() {
            let v = columns[c];
            let run_end = columns[c..]
                .iter()
                .position(|&w| w != v)
                .map_or(columns.len(), |n| c + n);
            write!(
                out,
                "V{}H{}",
                num(y_of(v)),
                num(self.scale.x0 + run_end as f64)
            )?;
            c = run_end;
        }
        writeln!(
            out,
            r#"V{}Z"><desc>{}</desc></path>"#,
            num(base),
            esc(self.tags[group.tag].name)
        )?;
        if group.stays.iter().any(|s| s.until.is_none()) {
            write_arrow(out, group.tag, self.scale.x1, base - 6.0, 5.0)?;
        }
        Ok(())
    }

    /// The "as of" line through every row, labelled above the marks row.
    fn write_at_marker(&self, out: &mut String) -> fmt::Result {
        let x = self.scale.x_of(self.sim.at);
        let top = self.marks_top() - 6.0;
        let anchor = if x > self.scale.x1 - 70.0 {
            "end"
        } else if x < self.scale.x0 + 70.0 {
            "start"
        } else {
            "middle"
        };
        writeln!(
            out,
            r#"<line id="at-marker" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{AT_COLOUR}" stroke-width="1.5"/>"#,
            num(top),
            num(self.axis_y()),
            x = num(x)
        )?;
        writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="{anchor}" font-weight="bold" fill="{AT_COLOUR}">as of {}</text>"#,
            num(x),
            num(top - 4.0),
            esc(&instant(self.sim.at))
        )
    }

    fn write_footnote(&self, out: &mut String) -> fmt::Result {
        let mut note =
            String::from("Each bar is one recovery point's stay in a tier (hover for dates).");
        if self.tiers.iter().any(|t| {
            t.groups
                .iter()
                .any(|g| matches!(g.shape, Shape::Density { .. }))
        }) {
            note.push_str(
                " Filled areas stand for tags with too many points to draw one by one: their height is the number held, up to the maximum shown.",
            );
        }
        writeln!(
            out,
            r#"<text class="sub" x="{MARGIN}" y="{}">{}</text>"#,
            num(self.axis_y() + 44.0),
            esc(&note)
        )
    }
}

/// A small right-pointing arrowhead after an open-ended bar.
fn write_arrow(out: &mut String, tag: usize, x: f64, y: f64, h: f64) -> fmt::Result {
    let reach = (h * 0.9).max(4.0);
    writeln!(
        out,
        r#"<path class="f{tag} arrow" d="M{} {}L{} {}L{} {}Z"/>"#,
        num(x),
        num(y - 1.5),
        num(x + reach),
        num(y + h / 2.0),
        num(x),
        num(y + h + 1.5)
    )
}

/// Legend entries, wrapped into rows that fit the width.
fn legend_rows(sim: &Simulation, tags: &[TagStyle<'_>]) -> Vec<Vec<(Swatch, String)>> {
    let mut items: Vec<(Swatch, String)> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                Swatch::Tag(i),
                format!(
                    "{}: {}, {} held",
                    t.name,
                    count(t.points, "point"),
                    thousands(t.held)
                ),
            )
        })
        .collect();
    items.push((
        Swatch::Marks,
        "recovery point: held / not held as of".to_owned(),
    ));
    items.push((Swatch::AtLine, "as of".to_owned()));
    let open_tag = sim.recovery_points.iter().find_map(|p| {
        p.data_stores
            .iter()
            .any(|s| s.until.is_none())
            .then(|| tags.iter().position(|t| t.name == p.retention_tag_name))
            .flatten()
    });
    if let Some(tag) = open_tag {
        items.push((Swatch::OpenEnded(tag), "kept indefinitely".to_owned()));
    }
    let mut rows: Vec<Vec<(Swatch, String)>> = vec![Vec::new()];
    let mut x = MARGIN;
    for item in items {
        let w = legend_item_width(&item.1);
        if x + w > WIDTH - MARGIN && !rows.last().is_some_and(Vec::is_empty) {
            rows.push(Vec::new());
            x = MARGIN;
        }
        x += w;
        rows.last_mut().expect("rows starts non-empty").push(item);
    }
    rows
}

/// Estimated width of a legend entry: swatch, text at about 6.4 px per character, spacing.
fn legend_item_width(text: &str) -> f64 {
    18.0 + text.chars().count() as f64 * 6.4 + 22.0
}

/// Calendar unit of the axis ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Year,
    Month,
    Day,
    Hour,
}

/// Axis ticks: instant and label, `None` for an unlabelled minor tick. The unit is years for
/// spans of two years or more, months under that, then days, then hours; labels go on every
/// 1st, 2nd, 5th... unit so that at most 16 are labelled, and the units in between get minor
/// ticks while there are not too many of them.
fn axis_ticks(scale: &Scale) -> Vec<(i64, Option<String>)> {
    const MAX_LABELS: usize = 16;
    const MAX_MINOR: usize = 120;
    let span = scale.t1 - scale.t0;
    let (unit, steps): (Unit, &[i64]) = if span >= 2 * 365 * 86_400 {
        (
            Unit::Year,
            &[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
        )
    } else if span >= 60 * 86_400 {
        (Unit::Month, &[1, 2, 3, 6, 12])
    } else if span >= 2 * 86_400 {
        (Unit::Day, &[1, 2, 7, 14])
    } else {
        (Unit::Hour, &[1, 2, 3, 6, 12])
    };
    let all = unit_boundaries(scale, unit);
    let labelled = |step: i64| all.iter().filter(|b| b.1.rem_euclid(step) == 0).count();
    let step = steps
        .iter()
        .copied()
        .find(|s| labelled(*s) <= MAX_LABELS)
        .unwrap_or(steps[steps.len() - 1]);
    let minors = all.len() <= MAX_MINOR;
    all.into_iter()
        .filter_map(|(t, index)| {
            if index.rem_euclid(step) == 0 {
                let dt = DateTime::from_timestamp(t, 0).unwrap_or_default();
                let fmt = match unit {
                    Unit::Year => "%Y",
                    Unit::Month => "%b %Y",
                    Unit::Day => "%d %b",
                    Unit::Hour => "%H:%M",
                };
                Some((t, Some(dt.format(fmt).to_string())))
            } else {
                minors.then_some((t, None))
            }
        })
        .collect()
}

/// Every start of a `unit` within the scale, with its index (year, month count, day or hour
/// count since the epoch) by which label steps are chosen.
fn unit_boundaries(scale: &Scale, unit: Unit) -> Vec<(i64, i64)> {
    let start = DateTime::from_timestamp(scale.t0, 0).unwrap_or_default();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    let mut out = Vec::new();
    match unit {
        Unit::Year | Unit::Month => {
            let month_step = if unit == Unit::Year { 12 } else { 1 };
            let first_month = if unit == Unit::Year { 1 } else { start.month() };
            let mut d = NaiveDate::from_ymd_opt(start.year(), first_month, 1);
            while let Some(date) = d {
                let Some(t) = midnight(date).filter(|t| *t <= scale.t1) else {
                    break;
                };
                if t >= scale.t0 {
                    let index = match unit {
                        Unit::Year => i64::from(date.year()),
                        _ => i64::from(date.year()) * 12 + i64::from(date.month0()),
                    };
                    out.push((t, index));
                }
                d = date.checked_add_months(Months::new(month_step));
            }
        }
        Unit::Day | Unit::Hour => {
            let len = if unit == Unit::Day { 86_400 } else { 3_600 };
            let mut t = scale.t0 - scale.t0.rem_euclid(len);
            while t <= scale.t1 {
                if t >= scale.t0 {
                    out.push((t, t.div_euclid(len)));
                }
                t += len;
            }
        }
    }
    out
}

/// A date, with the time of day only when it is not midnight.
fn instant(t: DateTime<Utc>) -> String {
    if t.hour() == 0 && t.minute() == 0 && t.second() == 0 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// Coordinates with one decimal: enough for a screen, and stable text for identical input.
fn num(v: f64) -> String {
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s).to_owned();
    if s == "-0" { "0".to_owned() } else { s }
}

/// "1 point", "2,000 points".
fn count(n: usize, noun: &str) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!("{} {noun}{plural}", thousands(n))
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Escapes text for XML content and attribute values. Characters XML 1.0 does not allow at
/// all (most C0 controls) become U+FFFD, since no escape can represent them.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
