//! What a run produced, for people (a text summary, a self-contained HTML page with plots) and
//! for scripts and tests (JSON).
//!
//! The HTML page has no external resource (no script, font or stylesheet link): the plots are
//! inline SVG drawn with `plotters`, so it opens offline and in a headless browser.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use crate::buyer::{Behaviour, BuyerReport};
use crate::ledger::{Ledger, Verdict};
use crate::recorder::{Endpoint, Latency, Sample};
use crate::sale_run::StockPoint;
use crate::scenario::Scenario;
use crate::summary::{BehaviourStats, BotFigures};

/// Everything one sale run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub scenario: Scenario,
    pub sale: String,
    pub api_url: String,
    pub crowd_seconds: f64,
    pub settle_seconds: f64,
    pub requests: u64,
    pub refusals: BTreeMap<String, u64>,
    pub latencies: Vec<Latency>,
    pub behaviours: BTreeMap<Behaviour, BehaviourStats>,
    /// How the bot defence treated bots and people.
    pub bots: BotFigures,
    pub verdict: Verdict,
    pub ledger: Ledger,
    pub reports: Vec<BuyerReport>,
    pub samples: Vec<Sample>,
    pub stock_series: Vec<StockPoint>,
}

impl RunRecord {
    /// Every buyer ended as its behaviour should.
    pub fn behaviours_as_expected(&self) -> bool {
        self.behaviours.values().all(|s| s.as_expected == s.buyers)
    }

    pub fn passed(&self) -> bool {
        self.verdict.pass && self.behaviours_as_expected()
    }

    /// Seconds from reserve (first 201) to seeing CONFIRMED, per buyer who bought.
    pub fn reserve_to_confirmed(&self) -> Vec<f64> {
        self.reports
            .iter()
            .filter_map(|r| match (r.reserved_at_ms, r.confirmed_at_ms) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
                _ => None,
            })
            .collect()
    }
}

/// The text summary the demo prints at the end.
pub fn text(r: &RunRecord) -> String {
    let mut out = String::new();
    let l = &r.ledger;
    let f = &r.verdict.figures;
    let _ = writeln!(out, "\n== ledger of sale {} ==", r.sale);
    let _ = writeln!(
        out,
        "stock {} = available {} + held {} + sold {}   ({} reservations: {} CONFIRMED, {} FAILED, {} EXPIRED, {} PENDING, {} PAYMENT_PROCESSING; {} orders)",
        l.stock,
        f.available,
        f.held,
        f.sold,
        f.reservations,
        l.count("CONFIRMED"),
        l.count("FAILED"),
        l.count("EXPIRED"),
        l.count("PENDING"),
        l.count("PAYMENT_PROCESSING"),
        f.orders
    );
    if let Some(charges) = &l.charges {
        let succeeded = charges.iter().filter(|c| c.status == "succeeded").count();
        let refunded = charges.iter().filter(|c| c.refunded > 0).count();
        let _ = writeln!(
            out,
            "provider: {} payment intents, {succeeded} succeeded, {refunded} refunded",
            charges.len()
        );
    }
    let _ = writeln!(
        out,
        "oversold {} | lost {} | double charges {} | stuck {}",
        f.oversold, f.lost, f.double_charges, f.stuck
    );
    for check in &r.verdict.checks {
        let _ = writeln!(
            out,
            "  [{}] {}: {}",
            if check.ok { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    let _ = writeln!(out, "\n== buyers by behaviour ==");
    for (b, s) in &r.behaviours {
        let outcomes: Vec<String> = s.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            out,
            "  {:<28} {:>4} buyers, {:>4} reserved, {:>4} as expected: {}",
            b.label(),
            s.buyers,
            s.reserved,
            s.as_expected,
            outcomes.join(", ")
        );
    }
    if r.bots.bots > 0 {
        let b = &r.bots;
        let _ = writeln!(
            out,
            "\n== bot defence ==\n  bots: {} reserve requests, {} stopped by the defence ({:.1} %), {} reservations, {} units bought\n  people: {} of {} challenged ({:.1} %), {} blocked",
            b.bot_reserve_requests,
            b.bot_requests_stopped,
            b.bot_requests_stopped_share * 100.0,
            b.bot_reservations,
            b.bot_units_confirmed,
            b.people_challenged,
            b.people,
            b.people_challenged_share * 100.0,
            b.people_blocked
        );
    }
    let _ = writeln!(
        out,
        "\n== latency (ms, answered calls; calls with no answer counted apart) =="
    );
    for lat in &r.latencies {
        let _ = writeln!(
            out,
            "  {:<32} n={:<5} no answer {:<3} p50 {:>7.1}  p95 {:>7.1}  p99 {:>7.1}  max {:>7.1}",
            lat.endpoint.route(),
            lat.count,
            lat.no_answer,
            lat.p50,
            lat.p95,
            lat.p99,
            lat.max
        );
    }
    let refused: Vec<String> = r.refusals.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "\n{} requests in {:.1} s ({:.1}/s); refusals: {}",
        r.requests,
        r.crowd_seconds,
        r.requests as f64 / r.crowd_seconds.max(0.001),
        if refused.is_empty() {
            "none".into()
        } else {
            refused.join(", ")
        }
    );
    for n in &r.verdict.not_checked {
        let _ = writeln!(out, "  [not checked] {n}");
    }
    let _ = writeln!(
        out,
        "settled in {:.1} s after the crowd\n\nVERDICT: {}{}",
        r.settle_seconds,
        if r.passed() { "PASS" } else { "FAIL" },
        match (r.verdict.pass, r.behaviours_as_expected()) {
            (true, true) => "",
            (false, true) => " (the ledger fails a check)",
            (true, false) => " (some buyers did not end as their behaviour should)",
            (false, false) =>
                " (the ledger fails a check, and some buyers did not end as their behaviour should)",
        }
    );
    out
}

pub fn write_json(r: &RunRecord, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes the HTML report (creating its folder).
pub fn write_html(r: &RunRecord, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, html(r)?).with_context(|| format!("writing {}", path.display()))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn html(r: &RunRecord) -> anyhow::Result<String> {
    let mut page = String::new();
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>flashsale run {sale}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.ok{{color:#176f2c}}.fail{{color:#b00020;font-weight:bold}}\
         figure{{margin:1em 0}}</style></head><body>\
         <h1>Sale {sale}: <span id=\"verdict\" class=\"{cls}\">{verdict}</span></h1>\
         <p>{name}: {stock} units on {shards} shards, limit {limit} per buyer, holds {hold} s; {buyers} buyers; \
         {requests} requests in {secs:.1} s through <code>{api}</code>.</p>",
        sale = esc(&r.sale),
        cls = if r.passed() { "ok" } else { "fail" },
        name = esc(&r.scenario.name),
        stock = r.scenario.sale.stock,
        shards = r.scenario.sale.shards,
        limit = r.scenario.sale.per_user_limit,
        hold = r.scenario.sale.hold_seconds,
        buyers = r.scenario.crowd.buyers,
        requests = r.requests,
        secs = r.crowd_seconds,
        api = esc(&r.api_url),
    );
    let f = &r.verdict.figures;
    let _ = write!(
        page,
        "<h2>Ledger</h2><p>stock {} = available {} + held {} + sold {}; oversold {}, lost {}, double charges {}, stuck {}</p><table id=\"checks\"><tr><th>check</th><th>result</th><th>detail</th></tr>",
        r.ledger.stock, f.available, f.held, f.sold, f.oversold, f.lost, f.double_charges, f.stuck
    );
    for c in &r.verdict.checks {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(c.name),
            if c.ok { "ok" } else { "fail" },
            if c.ok { "ok" } else { "FAIL" },
            esc(&c.detail)
        );
    }
    page.push_str("</table>");
    for n in &r.verdict.not_checked {
        let _ = write!(page, "<p>not checked: {}</p>", esc(n));
    }
    page.push_str("<h2>Buyers by behaviour</h2><table><tr><th>behaviour</th><th>buyers</th><th>reserved</th><th>as expected</th><th>outcomes</th></tr>");
    for (b, s) in &r.behaviours {
        let outcomes: Vec<String> = s
            .outcomes
            .iter()
            .map(|(k, n)| format!("{} {n}", esc(k)))
            .collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            b.label(),
            s.buyers,
            s.reserved,
            if s.as_expected == s.buyers {
                "ok"
            } else {
                "fail"
            },
            s.as_expected,
            outcomes.join(", ")
        );
    }
    page.push_str("</table>");
    if r.bots.bots > 0 {
        let b = &r.bots;
        let _ = write!(
            page,
            "<h2>Bot defence</h2><table><tr><th></th><th>reserve requests</th><th>stopped by the defence</th><th>reservations</th><th>units bought</th></tr>\
             <tr><td>{} bots</td><td>{}</td><td>{} ({:.1} %)</td><td>{}</td><td>{}</td></tr></table>\
             <p>People: {} of {} challenged ({:.1} %), {} blocked.</p>",
            b.bots,
            b.bot_reserve_requests,
            b.bot_requests_stopped,
            b.bot_requests_stopped_share * 100.0,
            b.bot_reservations,
            b.bot_units_confirmed,
            b.people_challenged,
            b.people,
            b.people_challenged_share * 100.0,
            b.people_blocked
        );
    }
    page.push_str("<h2>Latency (ms)</h2><table><tr><th>endpoint</th><th>answered</th><th>no answer</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>");
    for l in &r.latencies {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            l.endpoint.route(),
            l.count,
            l.no_answer,
            l.p50,
            l.p95,
            l.p99,
            l.max
        );
    }
    page.push_str("</table><h2>Plots</h2>");
    for (id, svg) in [
        ("stock", stock_plot(&r.stock_series)?),
        ("rate", rate_plot(&r.samples)?),
        ("latency", latency_plot(&r.samples)?),
        (
            "confirm",
            histogram_plot(
                "Reserve to CONFIRMED (s)",
                "seconds",
                &r.reserve_to_confirmed(),
            )?,
        ),
    ] {
        let _ = write!(page, "<figure id=\"plot-{id}\">{svg}</figure>");
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

const SIZE: (u32, u32) = (1000, 320);
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Available, held and sold units over time (from the Redis watcher).
fn stock_plot(points: &[StockPoint]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let x_max = points
            .last()
            .map_or(1.0, |p| p.at_ms as f64 / 1000.0)
            .max(1.0);
        let y_max = points
            .iter()
            .map(|p| p.available.max(p.held).max(p.sold))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Stock over time", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the open")
            .y_desc("units")
            .draw()
            .map_err(plot_error)?;
        let series: [(&str, fn(&StockPoint) -> i64); 3] = [
            ("available", |p| p.available),
            ("held", |p| p.held),
            ("sold", |p| p.sold),
        ];
        for (i, (name, value)) in series.into_iter().enumerate() {
            let color = COLORS[i];
            chart
                .draw_series(LineSeries::new(
                    points
                        .iter()
                        .map(|p| (p.at_ms as f64 / 1000.0, value(p) as f64)),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Requests per second, by outcome class.
fn rate_plot(samples: &[Sample]) -> anyhow::Result<String> {
    let class = |s: &Sample| -> &'static str {
        match s.status {
            Some(st) if st < 300 => "success",
            Some(410) => "sold out",
            Some(429) => "rate limited",
            Some(st) if st < 500 => "refused (4xx)",
            Some(_) => "unavailable (5xx)",
            None => "no answer",
        }
    };
    let seconds = samples.iter().map(|s| s.at_ms / 1000).max().unwrap_or(0) as usize + 1;
    let mut per: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    for s in samples {
        per.entry(class(s)).or_insert_with(|| vec![0; seconds])[(s.at_ms / 1000) as usize] += 1;
    }
    let y_max = per
        .values()
        .flat_map(|v| v.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Requests per second by outcome", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..seconds as f64, 0f64..y_max * 1.1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the open")
            .y_desc("requests/s")
            .draw()
            .map_err(plot_error)?;
        for (i, (name, counts)) in per.into_iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    counts
                        .into_iter()
                        .enumerate()
                        .map(|(t, n)| (t as f64, f64::from(n))),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Latency histograms of the answered calls, one series per endpoint (20 bins up to the p99
/// of all calls; slower calls go in the last bin).
fn latency_plot(samples: &[Sample]) -> anyhow::Result<String> {
    let answered: Vec<&Sample> = samples.iter().filter(|s| s.status.is_some()).collect();
    let mut all: Vec<f64> = answered.iter().map(|s| s.latency_ms).collect();
    all.sort_by(f64::total_cmp);
    let top = all
        .get(all.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(1.0)
        .max(1.0);
    const BINS: usize = 20;
    let width = top / BINS as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut per: Vec<(Endpoint, Vec<u32>)> = Vec::new();
        for endpoint in Endpoint::ALL {
            let mut bins = vec![0u32; BINS];
            for s in answered.iter().filter(|s| s.endpoint == endpoint) {
                bins[((s.latency_ms / width) as usize).min(BINS - 1)] += 1;
            }
            per.push((endpoint, bins));
        }
        let y_max = per
            .iter()
            .flat_map(|(_, b)| b.iter())
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency of answered calls", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..top, 0f64..y_max * 1.1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_desc("calls")
            .draw()
            .map_err(plot_error)?;
        for (i, (endpoint, bins)) in per.into_iter().enumerate() {
            let color = COLORS[i];
            chart
                .draw_series(LineSeries::new(
                    bins.into_iter()
                        .enumerate()
                        .map(|(b, n)| ((b as f64 + 0.5) * width, f64::from(n))),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(endpoint.route())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A histogram of `values` as bars (20 bins).
fn histogram_plot(title: &str, x_desc: &str, values: &[f64]) -> anyhow::Result<String> {
    const BINS: usize = 20;
    let top = values.iter().copied().fold(0.0, f64::max).max(1.0);
    let width = top / BINS as f64;
    let mut bins = vec![0u32; BINS];
    for v in values {
        bins[((v / width) as usize).min(BINS - 1)] += 1;
    }
    let y_max = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..top, 0f64..y_max * 1.1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("buyers")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(bins.iter().enumerate().map(|(b, n)| {
                let x0 = b as f64 * width;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, f64::from(*n))],
                    COLORS[0].filled(),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
