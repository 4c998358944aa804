//! The two figures of BENCHMARKS.md as SVG files: attempts per second by design, over the whole
//! crowd and in the selling phase (bars, red where the design failed a correctness column), and attempts per second by shard count on
//! the cluster.

use plotters::prelude::*;

use crate::cluster::Scaled;
use crate::rounds::Summary;

const SIZE: (u32, u32) = (900, 420);
const OK: RGBColor = RGBColor(44, 160, 44);
const FAILED: RGBColor = RGBColor(214, 39, 40);

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e:?}")
}

/// A bar's label: the design's name, short enough to sit under its bar.
fn short_label(design: &str) -> &str {
    match design {
        "single counter (Lua)" => "counter",
        "single counter + buyer records (Lua)" => "counter+records",
        "DECR then INCR back" => "DECR/INCR",
        "WATCH/MULTI (3 tries)" => "WATCH, 3 tries",
        "WATCH/MULTI (until it wins)" => "WATCH, until won",
        "buckets, no fallback" => "buckets",
        "ours + sold-out cache" => "ours+cache",
        "DynamoDB conditional decrement" => "DynamoDB",
        other => other,
    }
}

/// Bars of median attempts/s per design: the sell-out crowd (dark) and selling only (light,
/// where the design ran it).
pub fn designs(path: &str, summaries: &[Summary], selling: &[Summary]) -> anyhow::Result<()> {
    let selling_rate = |design: &str| {
        selling
            .iter()
            .find(|s| s.median.design == design)
            .map(|s| s.median.per_sec())
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let top = summaries
        .iter()
        .map(|s| {
            s.median
                .per_sec()
                .max(selling_rate(s.median.design).unwrap_or(0.0))
        })
        .fold(1.0, f64::max);
    let names: Vec<String> = summaries
        .iter()
        .map(|s| short_label(s.median.design).to_string())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Attempts/s: sell-out crowd (dark), selling only (light); green: no correctness failure",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..summaries.len() as f64, 0f64..top * 1.15)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(summaries.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (*x - 0.5).round();
            if (*x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("attempts/s (median round)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(summaries.iter().enumerate().map(|(i, s)| {
            let color = if s.worst.total() == 0 { OK } else { FAILED };
            let x = i as f64;
            Rectangle::new(
                [(x + 0.1, 0.0), (x + 0.5, s.median.per_sec())],
                color.filled(),
            )
        }))
        .map_err(plot_error)?;
    chart
        .draw_series(summaries.iter().enumerate().map(|(i, s)| {
            let color = if s.worst.total() == 0 { OK } else { FAILED };
            let x = i as f64;
            let selling = selling_rate(s.median.design).unwrap_or(0.0);
            Rectangle::new(
                [(x + 0.5, 0.0), (x + 0.9, selling)],
                color.mix(0.45).filled(),
            )
        }))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Lines of median attempts/s against the shard count, on the cluster; the single counter as a
/// flat reference line.
pub fn scaling(path: &str, scaled: &[Scaled]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let top = scaled
        .iter()
        .map(|s| s.summary.median.per_sec())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Selling only on a three-primary Redis Cluster: attempts/s by shard count",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..17f64, 0f64..top * 1.45)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("shards")
        .y_desc("attempts/s (median round)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
    ];
    let mut labels: Vec<&str> = Vec::new();
    for s in scaled {
        let label = s.summary.median.design;
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    for (i, label) in labels.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<(f64, f64)> = match scaled
            .iter()
            .find(|s| s.summary.median.design == label && s.shards.is_none())
        {
            // The single counter has no shards: a flat line across the plot.
            Some(flat) => vec![
                (1.0, flat.summary.median.per_sec()),
                (16.0, flat.summary.median.per_sec()),
            ],
            None => scaled
                .iter()
                .filter(|s| s.summary.median.design == label)
                .filter_map(|s| Some((f64::from(s.shards?), s.summary.median.per_sec())))
                .collect(),
        };
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
