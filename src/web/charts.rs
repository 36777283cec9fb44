//! Charts as SVG strings, drawn on the server: a line chart (with a dashed
//! comparison line), horizontal bars and sparklines. No chart crate:
//! plotters can't give each point its own `<title>`, which is what makes
//! the tooltips work without JavaScript.
//!
//! Every chart scales with its container (`viewBox`, width 100%), shows
//! days without data as gaps (never as zero) and escapes its labels, which
//! come from providers. The pages render a visually hidden table next to
//! each chart for screen readers (`table_*` methods).
//!
//! Pure functions only: the caller turns query answers into `Series`.

use std::fmt::Write as _;

use crate::metrics::semantic::Unit;

/// How the values of a chart or tile are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFormat {
    pub unit: Unit,
    /// The ISO code for currency amounts.
    pub currency: Option<String>,
}

impl ValueFormat {
    pub fn new(unit: Unit, currency: Option<&str>) -> ValueFormat {
        ValueFormat {
            unit,
            currency: currency.map(str::to_owned),
        }
    }

    /// The value as people read it: `12,345`, `1,234.50 EUR`, `3.10%`,
    /// `2.35×`, `1m 05s`; `—` for a missing or non-finite value.
    pub fn format(&self, value: Option<f64>) -> String {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return "—".to_owned();
        };
        match self.unit {
            Unit::Count => {
                // Averages of counts (non-additive metrics) keep one decimal.
                if (v - v.round()).abs() < 1e-9 {
                    group_thousands(v, 0)
                } else {
                    group_thousands(v, 1)
                }
            }
            Unit::Currency => match &self.currency {
                Some(code) => format!("{} {code}", group_thousands(v, 2)),
                None => group_thousands(v, 2),
            },
            Unit::Percent => format!("{}%", group_thousands(v * 100.0, 2)),
            Unit::Ratio => format!("{}×", group_thousands(v, 2)),
            Unit::DurationSeconds => duration(v),
        }
    }

    /// A short form for axis ticks: `12k`, `1.5M`, `20%`.
    pub fn axis(&self, v: f64) -> String {
        if !v.is_finite() {
            return String::new();
        }
        match self.unit {
            Unit::Percent => format!("{}%", trim_number(v * 100.0)),
            Unit::Ratio => format!("{}×", trim_number(v)),
            Unit::DurationSeconds => duration(v),
            Unit::Count | Unit::Currency => compact(v),
        }
    }
}

/// `1234567.891` with 2 decimals → `1,234,567.89`.
pub fn group_thousands(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text.as_str(), None),
    };
    let mut out = String::with_capacity(text.len() + int.len() / 3 + 1);
    // "-0.00" would read as a loss: only non-zero values get a sign.
    if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn trim_number(v: f64) -> String {
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{}B", trim_number(v / 1e9))
    } else if a >= 1e6 {
        format!("{}M", trim_number(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim_number(v / 1e3))
    } else {
        trim_number(v)
    }
}

fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "—".to_owned();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    // Bounded before the cast: a huge value must not wrap.
    let total = seconds.abs().round().min(1e12) as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{sign}{h}h {m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m {s:02}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// Text for SVG: labels come from providers and must stay text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML text.
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Axis ticks at a 1-2-5 step covering `min..=max` with at most about
/// `target` ticks. The range always includes 0 for data of one sign, so
/// bars and lines aren't exaggerated.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let (mut lo, mut hi) = if min.is_finite() && max.is_finite() {
        (min.min(max), max.max(min))
    } else {
        (0.0, 1.0)
    };
    lo = lo.min(0.0);
    hi = hi.max(0.0);
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    let target = target.max(2);
    let raw = (hi - lo) / (target - 1) as f64;
    let step = nice_step(lo, hi, raw, target);
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    let unit = 10f64.powf((-step.log10().floor()).max(0.0));
    let mut ticks = Vec::new();
    let mut i = 0.0;
    // Bounded: nice_step keeps the count at target+1 or below.
    while ticks.len() <= target + 2 {
        let t = start + i * step;
        if t > end + step * 1e-9 {
            break;
        }
        // Snap float noise such as 0.30000000000000004 to the step's decimals.
        ticks.push((t * unit).round() / unit);
        i += 1.0;
    }
    ticks
}

/// The smallest 1-2-5 step, from the magnitude of `raw` up, that covers
/// `lo..hi` in at most `target + 1` ticks.
fn nice_step(lo: f64, hi: f64, raw: f64, target: usize) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mut magnitude = 10f64.powf(raw.log10().floor());
    for _ in 0..4 {
        for nice in [1.0, 2.0, 5.0] {
            let step = nice * magnitude;
            let count = (hi / step).ceil() - (lo / step).floor() + 1.0;
            if count <= (target + 1) as f64 {
                return step;
            }
        }
        magnitude *= 10.0;
    }
    magnitude
}

/// Maps `value` from `lo..hi` onto `from..to` (pixels; `to < from` for y).
fn scale(value: f64, lo: f64, hi: f64, from: f64, to: f64) -> f64 {
    if (hi - lo).abs() < f64::EPSILON {
        return from;
    }
    from + (value - lo) / (hi - lo) * (to - from)
}

/// The runs of consecutive present values: each a list of (index, value).
/// A missing day ends a run, so a line breaks there instead of dropping to 0.
pub fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => current.push((i, v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One line: a value per x label (None: no data).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub values: Vec<Option<f64>>,
    /// Drawn dashed: the comparison period.
    pub dashed: bool,
    /// The x labels for this series' tooltips (its own dates for a
    /// comparison line); the chart's labels when empty.
    pub point_labels: Vec<String>,
}

const W: f64 = 480.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// A line chart over days (or periods), with an optional comparison line.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    pub format: ValueFormat,
}

impl LineChart {
    fn extent(&self) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for v in self.series.iter().flat_map(|s| s.values.iter().flatten()) {
            if v.is_finite() {
                lo = lo.min(*v);
                hi = hi.max(*v);
            }
        }
        (lo, hi)
    }

    pub fn has_data(&self) -> bool {
        self.series
            .iter()
            .any(|s| s.values.iter().flatten().any(|v| v.is_finite()))
    }

    pub fn svg(&self) -> String {
        let (lo, hi) = self.extent();
        let ticks = nice_ticks(lo, hi, 5);
        let (y_lo, y_hi) = (
            ticks.first().copied().unwrap_or(0.0),
            ticks.last().copied().unwrap_or(1.0),
        );
        let n = self.x_labels.len().max(1);
        let plot_w = W - LEFT - RIGHT;
        let x = |i: usize| {
            if n <= 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + i as f64 * plot_w / (n - 1) as f64
            }
        };
        let y = |v: f64| scale(v, y_lo, y_hi, H - BOTTOM, TOP);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart line-chart" viewBox="0 0 {W} {H}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(s, "<title>{}</title>", escape(&self.title));
        for t in &ticks {
            let ty = y(*t);
            let _ = write!(
                s,
                r##"<line class="grid" x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e3e6eb"/><text class="tick" x="{}" y="{:.1}" text-anchor="end" font-size="12" fill="#4f5868">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                ty + 4.0,
                escape(&self.format.axis(*t))
            );
        }
        for i in x_tick_indexes(self.x_labels.len(), 4) {
            let anchor = if i == 0 {
                "start"
            } else if i + 1 == self.x_labels.len() {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                s,
                r##"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}" font-size="12" fill="#4f5868">{}</text>"##,
                x(i),
                H - 8.0,
                escape(self.x_labels.get(i).map_or("", String::as_str))
            );
        }
        // Comparison first, so the current period is drawn on top.
        let mut order: Vec<(usize, &Series)> = self.series.iter().enumerate().collect();
        order.sort_by_key(|(_, s)| !s.dashed);
        for (k, series) in order {
            let class = if series.dashed {
                "compare".to_owned()
            } else {
                format!("s{}", k % 6)
            };
            let dash = if series.dashed {
                r#" stroke-dasharray="5 4""#
            } else {
                ""
            };
            for run in runs(&series.values) {
                if run.len() > 1 {
                    let mut d = String::new();
                    for (j, (i, v)) in run.iter().enumerate() {
                        let _ = write!(
                            d,
                            "{}{:.1} {:.1}",
                            if j == 0 { "M" } else { " L" },
                            x(*i),
                            y(*v)
                        );
                    }
                    let _ = write!(
                        s,
                        r#"<path class="line {class}" d="{d}" fill="none" stroke-width="2"{dash}/>"#
                    );
                }
            }
            for (i, v) in series.values.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else {
                    continue;
                };
                let label = series
                    .point_labels
                    .get(i)
                    .or_else(|| self.x_labels.get(i))
                    .map_or("", String::as_str);
                let _ = write!(
                    s,
                    r#"<circle class="point {class}" cx="{:.1}" cy="{:.1}" r="3"><title>{}: {} ({})</title></circle>"#,
                    x(i),
                    y(v),
                    escape(label),
                    escape(&self.format.format(Some(v))),
                    escape(&series.label)
                );
            }
        }
        s.push_str("</svg>");
        s
    }

    /// The screen-reader table: header cells then one row per x label.
    pub fn table_head(&self) -> Vec<String> {
        let mut head = vec!["Date".to_owned()];
        head.extend(self.series.iter().map(|s| s.label.clone()));
        head
    }

    pub fn table_rows(&self) -> Vec<Vec<String>> {
        self.x_labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let mut row = vec![label.clone()];
                row.extend(
                    self.series
                        .iter()
                        .map(|s| self.format.format(s.values.get(i).copied().flatten())),
                );
                row
            })
            .collect()
    }
}

/// Which x labels to print: the first, the last and a few evenly between.
fn x_tick_indexes(n: usize, target: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        1 => vec![0],
        _ => {
            let target = target.clamp(2, n);
            let mut out: Vec<usize> = (0..target).map(|k| k * (n - 1) / (target - 1)).collect();
            out.dedup();
            out
        }
    }
}

/// One bar per group (provider or account), drawn horizontally so long
/// names fit a phone.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub bars: Vec<Bar>,
    pub format: ValueFormat,
}

#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
}

const BAR_ROW: f64 = 40.0;

impl BarChart {
    pub fn has_data(&self) -> bool {
        self.bars
            .iter()
            .any(|b| b.value.is_some_and(f64::is_finite))
    }

    pub fn svg(&self) -> String {
        let values: Vec<f64> = self
            .bars
            .iter()
            .filter_map(|b| b.value.filter(|v| v.is_finite()))
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ticks = nice_ticks(lo, hi, 4);
        let (x_lo, x_hi) = (
            ticks.first().copied().unwrap_or(0.0),
            ticks.last().copied().unwrap_or(1.0),
        );
        let (left, right) = (8.0, W - 8.0);
        let x = |v: f64| scale(v, x_lo, x_hi, left, right);
        let height = TOP + self.bars.len().max(1) as f64 * BAR_ROW + 8.0;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart bar-chart" viewBox="0 0 {W} {height}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(s, "<title>{}</title>", escape(&self.title));
        let zero = x(0.0);
        for (i, bar) in self.bars.iter().enumerate() {
            let top = TOP + i as f64 * BAR_ROW;
            let value_text = self.format.format(bar.value);
            let _ = write!(
                s,
                r##"<text class="bar-label" x="{left}" y="{:.1}" font-size="13" fill="#1d2330">{} <tspan fill="#4f5868">{}</tspan></text>"##,
                top + 13.0,
                escape(&bar.label),
                escape(&value_text)
            );
            if let Some(v) = bar.value.filter(|v| v.is_finite()) {
                let (a, b) = (zero.min(x(v)), zero.max(x(v)));
                let _ = write!(
                    s,
                    r#"<rect class="bar s{}" x="{a:.1}" y="{:.1}" width="{:.1}" height="16" rx="2"><title>{}: {}</title></rect>"#,
                    i % 6,
                    top + 18.0,
                    (b - a).max(1.0),
                    escape(&bar.label),
                    escape(&value_text)
                );
            }
        }
        s.push_str("</svg>");
        s
    }

    pub fn table_rows(&self) -> Vec<(String, String)> {
        self.bars
            .iter()
            .map(|b| (b.label.clone(), self.format.format(b.value)))
            .collect()
    }
}

/// A tile's small line: no axes, a gap for each missing day.
#[derive(Debug, Clone)]
pub struct Sparkline {
    pub title: String,
    pub x_labels: Vec<String>,
    pub values: Vec<Option<f64>>,
    pub format: ValueFormat,
}

impl Sparkline {
    pub fn has_data(&self) -> bool {
        self.values.iter().flatten().any(|v| v.is_finite())
    }

    pub fn svg(&self) -> String {
        const SW: f64 = 120.0;
        const SH: f64 = 28.0;
        let present: Vec<f64> = self
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let n = self.values.len().max(2);
        let x = |i: usize| 2.0 + i as f64 * (SW - 4.0) / (n - 1) as f64;
        let y = |v: f64| {
            if (hi - lo).abs() < f64::EPSILON {
                SH / 2.0
            } else {
                scale(v, lo, hi, SH - 3.0, 3.0)
            }
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart sparkline" viewBox="0 0 {SW} {SH}" width="100%" preserveAspectRatio="none" role="img" aria-label="{}"><title>{}</title>"#,
            escape(&self.title),
            escape(&self.title)
        );
        for run in runs(&self.values) {
            let mut d = String::new();
            for (j, (i, v)) in run.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if j == 0 { "M" } else { " L" },
                    x(*i),
                    y(*v)
                );
            }
            if run.len() == 1 {
                // A lone day between gaps: a short stroke so it shows.
                let _ = write!(d, " h0.5");
            }
            let _ = write!(
                s,
                r#"<path class="line s0" d="{d}" fill="none" stroke-width="1.5" vector-effect="non-scaling-stroke"/>"#
            );
        }
        for (i, v) in self.values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let label = self.x_labels.get(i).map_or("", String::as_str);
            let _ = write!(
                s,
                r#"<circle class="hit" cx="{:.1}" cy="{:.1}" r="2" fill="transparent"><title>{}: {}</title></circle>"#,
                x(i),
                y(v),
                escape(label),
                escape(&self.format.format(Some(v)))
            );
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count() -> ValueFormat {
        ValueFormat::new(Unit::Count, None)
    }

    #[test]
    fn values_are_formatted_by_unit() {
        assert_eq!(count().format(Some(1234567.0)), "1,234,567");
        assert_eq!(count().format(Some(999.0)), "999");
        assert_eq!(count().format(Some(12.26)), "12.3");
        assert_eq!(count().format(None), "—");
        assert_eq!(count().format(Some(f64::NAN)), "—");
        let eur = ValueFormat::new(Unit::Currency, Some("EUR"));
        assert_eq!(eur.format(Some(1234.5)), "1,234.50 EUR");
        assert_eq!(eur.format(Some(-0.001)), "0.00 EUR");
        assert_eq!(eur.format(Some(-1500.0)), "-1,500.00 EUR");
        assert_eq!(
            ValueFormat::new(Unit::Percent, None).format(Some(0.031)),
            "3.10%"
        );
        assert_eq!(
            ValueFormat::new(Unit::Ratio, None).format(Some(3.2)),
            "3.20×"
        );
        let d = ValueFormat::new(Unit::DurationSeconds, None);
        assert_eq!(d.format(Some(42.0)), "42s");
        assert_eq!(d.format(Some(65.0)), "1m 05s");
        assert_eq!(d.format(Some(3720.0)), "1h 02m");
        assert_eq!(d.format(Some(1e300)), "277777777h 46m");
    }

    #[test]
    fn axis_labels_are_compact() {
        assert_eq!(count().axis(25_000.0), "25k");
        assert_eq!(count().axis(1_500_000.0), "1.5M");
        assert_eq!(count().axis(0.5), "0.5");
        assert_eq!(ValueFormat::new(Unit::Percent, None).axis(0.2), "20%");
    }

    #[test]
    fn ticks_use_1_2_5_steps_and_include_zero() {
        assert_eq!(
            nice_ticks(0.0, 97.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(3.0, 9.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(0.0, 0.3, 4), vec![0.0, 0.1, 0.2, 0.3]);
        assert_eq!(
            nice_ticks(-40.0, 60.0, 5),
            vec![-40.0, -20.0, 0.0, 20.0, 40.0, 60.0]
        );
        // One value, no data, non-finite input: still a usable axis.
        assert_eq!(nice_ticks(0.0, 0.0, 5).first(), Some(&0.0));
        assert!(nice_ticks(0.0, 0.0, 5).len() >= 2);
        assert!(nice_ticks(f64::INFINITY, f64::NEG_INFINITY, 5).len() >= 2);
        assert!(nice_ticks(0.0, 1e300, 5).len() <= 7);
        for (lo, hi) in [(0.0, 7.0), (10.0, 12345.0), (0.0, 0.0042)] {
            let t = nice_ticks(lo, hi, 5);
            assert!(
                t.first().unwrap() <= &lo && t.last().unwrap() >= &hi,
                "{t:?}"
            );
            assert!(t.len() <= 7, "{t:?}");
        }
    }

    #[test]
    fn missing_days_are_gaps_not_zero() {
        let r = runs(&[
            Some(1.0),
            Some(2.0),
            None,
            None,
            Some(5.0),
            Some(f64::NAN),
            Some(7.0),
        ]);
        assert_eq!(
            r,
            vec![vec![(0, 1.0), (1, 2.0)], vec![(4, 5.0)], vec![(6, 7.0)]]
        );
        assert!(runs(&[None, None]).is_empty());
        let chart = LineChart {
            title: "Clicks".into(),
            x_labels: (1..=5).map(|d| format!("2026-01-0{d}")).collect(),
            series: vec![Series {
                label: "This period".into(),
                values: vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)],
                dashed: false,
                point_labels: Vec::new(),
            }],
            format: count(),
        };
        let svg = chart.svg();
        // Two separate paths and four points; no point for the missing day.
        assert_eq!(svg.matches("<path").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(!svg.contains("2026-01-03: "), "{svg}");
        assert_eq!(chart.table_rows()[2], vec!["2026-01-03", "—"]);
    }

    #[test]
    fn points_are_scaled_into_the_plot() {
        let chart = LineChart {
            title: "t".into(),
            x_labels: vec!["a".into(), "b".into()],
            series: vec![Series {
                label: "s".into(),
                values: vec![Some(0.0), Some(10.0)],
                dashed: false,
                point_labels: Vec::new(),
            }],
            format: count(),
        };
        let svg = chart.svg();
        // 0 sits on the bottom edge of the plot, 10 on the top; first and
        // last x at the plot's edges.
        assert!(
            svg.contains(&format!(r#"cx="{LEFT:.1}" cy="{:.1}""#, H - BOTTOM)),
            "{svg}"
        );
        assert!(
            svg.contains(&format!(r#"cx="{:.1}" cy="{TOP:.1}""#, W - RIGHT)),
            "{svg}"
        );
        assert!(svg.contains("viewBox=\"0 0 480 220\"") && svg.contains("width=\"100%\""));
    }

    #[test]
    fn the_comparison_is_dashed_and_named_by_its_own_dates() {
        let chart = LineChart {
            title: "Clicks".into(),
            x_labels: vec!["2026-02-01".into(), "2026-02-02".into()],
            series: vec![
                Series {
                    label: "This period".into(),
                    values: vec![Some(3.0), Some(4.0)],
                    dashed: false,
                    point_labels: Vec::new(),
                },
                Series {
                    label: "Previous period".into(),
                    values: vec![Some(1.0), Some(2.0)],
                    dashed: true,
                    point_labels: vec!["2026-01-30".into(), "2026-01-31".into()],
                },
            ],
            format: count(),
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
        assert!(
            svg.contains("<title>2026-01-31: 2 (Previous period)</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>2026-02-02: 4 (This period)</title>"));
    }

    #[test]
    fn labels_from_providers_are_escaped() {
        let evil = r#"<script>alert("x")</script> & 'co'"#;
        let bars = BarChart {
            title: evil.into(),
            bars: vec![Bar {
                label: evil.into(),
                value: Some(5.0),
            }],
            format: count(),
        };
        let svg = bars.svg();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;")
        );
        let line = LineChart {
            title: evil.into(),
            x_labels: vec![evil.into()],
            series: vec![Series {
                label: evil.into(),
                values: vec![Some(1.0)],
                dashed: false,
                point_labels: Vec::new(),
            }],
            format: count(),
        };
        assert!(!line.svg().contains("<script>"));
        let spark = Sparkline {
            title: evil.into(),
            x_labels: vec![evil.into()],
            values: vec![Some(1.0)],
            format: count(),
        };
        assert!(!spark.svg().contains("<script>"));
        assert_eq!(escape("a\u{0}b\u{1b}c"), "abc");
    }

    #[test]
    fn bars_start_at_zero_and_missing_bars_say_so() {
        let chart = BarChart {
            title: "Clicks by provider".into(),
            bars: vec![
                Bar {
                    label: "Sandbox".into(),
                    value: Some(50.0),
                },
                Bar {
                    label: "GA4".into(),
                    value: Some(100.0),
                },
                Bar {
                    label: "Ads".into(),
                    value: None,
                },
            ],
            format: count(),
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("<rect").count(), 2);
        // Half the value, half the width (ticks 0..100).
        let full = W - 16.0;
        assert!(
            svg.contains(&format!(r#"width="{:.1}""#, full / 2.0)),
            "{svg}"
        );
        assert!(svg.contains(&format!(r#"width="{full:.1}""#)));
        assert!(svg.contains("Ads <tspan fill=\"#4f5868\">—</tspan>"));
        assert_eq!(chart.table_rows()[2], ("Ads".to_owned(), "—".to_owned()));
    }

    #[test]
    fn sparklines_break_at_gaps_and_have_tooltips() {
        let spark = Sparkline {
            title: "Clicks, last 4 days".into(),
            x_labels: vec!["d1".into(), "d2".into(), "d3".into(), "d4".into()],
            values: vec![Some(1.0), None, Some(3.0), Some(3.0)],
            format: count(),
        };
        let svg = spark.svg();
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("<title>d3: 3</title>"));
        assert!(!svg.contains("d2:"));
        // Flat or empty data doesn't divide by zero.
        let flat = Sparkline {
            values: vec![Some(2.0), Some(2.0)],
            ..spark.clone()
        };
        assert!(!flat.svg().contains("NaN"));
        let empty = Sparkline {
            values: vec![None, None],
            ..spark
        };
        assert!(!empty.has_data());
        assert!(!empty.svg().contains("NaN"));
    }
}
