//! The history curve as an SVG (no plotting crate: a few lines and labels): each judged figure
//! as a ratio to the empty database's, against the history size, with the 1.2× target line.

use std::fmt::Write;
use std::path::Path;

use crate::history::{figures, HistoryPoint, TARGET_RATIO};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
/// Plot area: left, top, right, bottom margins.
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const RIGHT: f64 = 330.0;
const BOTTOM: f64 = 60.0;
const COLOURS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000", "#aa4499",
];

/// Draw every judged figure of `points` (ratio to N = 0) into `path`. Points are spaced
/// evenly (0, 10 000, 120 000, 1 000 000 are orders of magnitude apart).
pub fn history_svg(points: &[HistoryPoint], path: &Path) -> Result<(), String> {
    let Some(empty) = points.iter().find(|p| p.orders == 0) else {
        return Ok(());
    };
    let base = figures(empty);
    // series[k][i]: figure k at point i, as a ratio (>1 is worse).
    let series: Vec<(&str, Vec<f64>)> = base
        .iter()
        .enumerate()
        .map(|(k, (name, at_empty, lower))| {
            let values = points
                .iter()
                .map(|p| {
                    let v = figures(p)[k].1;
                    let r = if *lower {
                        v / at_empty.max(f64::MIN_POSITIVE)
                    } else {
                        at_empty / v.max(f64::MIN_POSITIVE)
                    };
                    if r.is_finite() {
                        r
                    } else {
                        0.0
                    }
                })
                .collect();
            (*name, values)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.5f64, f64::max)
        .min(20.0);
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |i: usize| LEFT + w * i as f64 / (points.len().max(2) - 1) as f64;
    let y = |r: f64| TOP + h * (1.0 - r.min(top) / top);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15">Kaffediem with a year of history: each figure ÷ the empty database's (lower is better)</text>"#
    );
    // Axes, grid and labels.
    let ticks = (top.ceil() as usize).max(2);
    let step = if ticks > 10 { 2.0 } else { 0.5 };
    let mut t = 0.0;
    while t <= top + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#eee"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{t:.1}×</text>"##,
            y = y(t),
            x2 = LEFT + w,
            lx = LEFT - 6.0,
            ty = y(t) + 4.0
        );
        t += step;
    }
    for (i, p) in points.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{b}" stroke="#eee"/><text x="{x:.1}" y="{ty}" text-anchor="middle">{n}</text>"##,
            x = x(i),
            b = TOP + h,
            ty = TOP + h + 18.0,
            n = thousands(p.orders)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{cx}" y="{ty}" text-anchor="middle">past orders in the database</text>"#,
        cx = LEFT + w / 2.0,
        ty = HEIGHT - 18.0
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{x2}" y2="{ty:.1}" stroke="#d00" stroke-dasharray="6,4"/><text x="{x2}" y="{ly:.1}" fill="#d00" text-anchor="end">target {TARGET_RATIO}×</text>"##,
        ty = y(TARGET_RATIO),
        x2 = LEFT + w,
        ly = y(TARGET_RATIO) - 4.0
    );
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let pts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{:.1},{:.1}", x(i), y(*r)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        let ly = TOP + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{tx}" y="{ty}">{name}</text>"#,
            lx = WIDTH - RIGHT + 20.0,
            lx2 = WIDTH - RIGHT + 40.0,
            tx = WIDTH - RIGHT + 46.0,
            ty = ly + 4.0
        );
    }
    let _ = writeln!(svg, "</svg>");
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
}

/// 1000000 → "1 000 000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
