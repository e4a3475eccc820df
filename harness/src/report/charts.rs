//! SVG charts drawn with plotters' SVG backend (no font files needed: text is left to the
//! browser as SVG `<text>`, sizes estimated). Each function returns one `<svg>` element,
//! without the XML namespace URL, ready to inline in HTML.

use plotters::prelude::*;

const BASE: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const NEW: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
    RGBColor(0x81, 0x72, 0xb3),
    RGBColor(0x93, 0x78, 0x60),
    RGBColor(0xda, 0x8b, 0xc3),
    RGBColor(0x8c, 0x8c, 0x8c),
    RGBColor(0xcc, 0xb9, 0x74),
];

/// A median with its interval.
#[derive(Debug, Clone, Copy)]
pub struct Whisker {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

/// One category of a rates chart: both sides (either may be missing).
pub struct RateRow {
    pub label: String,
    pub base: Option<Whisker>,
    pub new: Option<Whisker>,
}

fn finish(svg: String) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

fn log_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in vals.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (hi > 0.0).then(|| (lo / 1.6, hi * 1.6))
}

/// Points with confidence whiskers per category, base left and new right, log scale.
pub fn rates(title: &str, y_desc: &str, rows: &[RateRow], scale: f64) -> Option<String> {
    let all = rows
        .iter()
        .flat_map(|r| [r.base, r.new])
        .flatten()
        .flat_map(|w| [w.low / scale, w.high / scale, w.median / scale]);
    let (lo, hi) = log_range(all)?;
    let n = rows.len();
    let width = (160 + 130 * n as u32).max(420);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 300)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())
            .ok()?;
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        chart
            .configure_mesh()
            .x_labels(n.max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .y_label_formatter(&|v| short(*v))
            .label_style(("sans-serif", 11))
            .disable_x_mesh()
            .draw()
            .ok()?;
        for (side, color, dx) in [("base", BASE, -0.12), ("new", NEW, 0.12)] {
            let pick = |r: &RateRow| if side == "base" { r.base } else { r.new };
            chart
                .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                    pick(r).map(|w| {
                        ErrorBar::new_vertical(
                            i as f64 + dx,
                            w.low / scale,
                            w.median / scale,
                            w.high / scale,
                            color.filled(),
                            10,
                        )
                    })
                }))
                .ok()?
                .label(side)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            chart
                .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                    pick(r)
                        .map(|w| Circle::new((i as f64 + dx, w.median / scale), 4, color.filled()))
                }))
                .ok()?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(finish(svg))
}

/// Latency percentile curves (p50 … p99.99) of both sides; x is the number of nines.
pub fn percentiles(
    title: &str,
    base: Option<&[(f64, f64)]>,
    new: Option<&[(f64, f64)]>,
) -> Option<String> {
    let nines = |q: f64| -(1.0 - q).log10();
    let vals = base
        .into_iter()
        .chain(new)
        .flat_map(|c| c.iter().map(|p| p.1));
    let (lo, hi) = log_range(vals)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (360, 240)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 13))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(62)
            .build_cartesian_2d(0.2f64..4.1, (lo..hi).log_scale())
            .ok()?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| match x.round() as i64 {
                1 => "p90".into(),
                2 => "p99".into(),
                3 => "p99.9".into(),
                4 => "p99.99".into(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| crate::compare::metrics::format_ns(*v))
            .label_style(("sans-serif", 10))
            .draw()
            .ok()?;
        for (side, color, curve) in [("base", BASE, base), ("new", NEW, new)] {
            let Some(curve) = curve else { continue };
            chart
                .draw_series(LineSeries::new(
                    curve.iter().map(|(q, v)| (nines(*q), *v)),
                    color.stroke_width(2),
                ))
                .ok()?
                .label(side)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .label_font(("sans-serif", 10))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(finish(svg))
}

/// A vertical marker on a trend chart, between two runs.
#[derive(Debug, Clone)]
pub struct Mark {
    /// x position (a run's index; `i − 0.5` falls between runs `i − 1` and `i`).
    pub at: f64,
    /// The series whose colour the marker takes; `None`: grey (a setup change).
    pub series: Option<usize>,
    pub label: String,
}

const GREY: RGBColor = RGBColor(0x70, 0x70, 0x70);

/// Each workload over the runs, in percent of its median over the runs shown, with vertical
/// markers (change points, setup changes) labelled at the top.
pub fn trend(
    title: &str,
    runs: &[String],
    series: &[(String, Vec<(usize, f64)>)],
    marks: &[Mark],
) -> Option<String> {
    if runs.len() < 2 || series.is_empty() {
        return None;
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, pts) in series {
        for (_, v) in pts {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.1).max(2.0);
    // Room above the points for one label row per marker sharing a position.
    let rows = marks
        .iter()
        .map(|m| marks.iter().filter(|o| (o.at - m.at).abs() < 0.6).count())
        .max()
        .unwrap_or(0);
    let row_h = (hi - lo + 2.0 * pad) / 14.0;
    let top = hi + pad + row_h * rows as f64;
    let n = runs.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), (lo - pad)..top)
            .ok()?;
        chart
            .configure_mesh()
            .x_labels(n.min(8))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    runs.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("% of median over runs")
            .label_style(("sans-serif", 10))
            .draw()
            .ok()?;
        for (k, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|(i, v)| (*i as f64, *v)),
                    color.stroke_width(2),
                ))
                .ok()?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    pts.iter()
                        .map(|(i, v)| Circle::new((*i as f64, *v), 3, color.filled())),
                )
                .ok()?;
        }
        let mut placed: Vec<f64> = Vec::new();
        for m in marks {
            let color = m.series.map_or(GREY, |k| PALETTE[k % PALETTE.len()]);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.at, lo - pad), (m.at, top)],
                    color.stroke_width(if m.series.is_some() { 2 } else { 1 }),
                )))
                .ok()?;
            let row = placed.iter().filter(|x| (*x - m.at).abs() < 0.6).count();
            placed.push(m.at);
            chart
                .draw_series(std::iter::once(Text::new(
                    m.label.clone(),
                    (m.at + 0.1, top - row_h * (row as f64 + 0.1)),
                    ("sans-serif", 10).into_font().color(&color),
                )))
                .ok()?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .label_font(("sans-serif", 10))
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(finish(svg))
}

/// 1.2k, 35M, 0.5 — axis labels.
fn short(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.0}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
