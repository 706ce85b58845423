//! The figures: the Pareto plot of score changes, the same plane in code length (ΔL), and the
//! per-LR curves, as standalone SVG documents.

use crate::pareto::frontier;
use crate::plot::{px, Canvas, Frame, Linear, LogLr, SignedLog, PALETTE};
use crate::summary::{fmt_lr, fmt_number, Point, Score, Summary};

/// How a series is drawn: its color, and a diamond marker for post-hoc merges.
struct SeriesStyle {
    name: String,
    color: &'static str,
    merge: bool,
}

/// Series in order of first appearance, each with its style.
fn series_styles(points: &[Point]) -> Vec<SeriesStyle> {
    let mut styles: Vec<SeriesStyle> = Vec::new();
    for p in points {
        if !styles.iter().any(|s| s.name == p.series) {
            let color = PALETTE[styles.len() % PALETTE.len()];
            styles.push(SeriesStyle { name: p.series.clone(), color, merge: p.kind == "merge" });
        }
    }
    styles
}

fn color_of(styles: &[SeriesStyle], series: &str) -> &'static str {
    styles.iter().find(|s| s.name == series).map_or("#777", |s| s.color)
}

/// The interval drawn for a score: its 95% interval, or the seed range where there is none.
fn whiskers(s: &Score) -> [f64; 2] {
    s.ci95.unwrap_or(s.seed_range)
}

/// Width and height the legend needs: DejaVu Sans at 13 px averages under 7.5 px a character.
fn legend_size(styles: &[SeriesStyle]) -> (f64, f64) {
    let longest = styles.iter().map(|s| s.name.chars().count()).chain(["post-hoc merge".len()]).max().unwrap_or(0);
    (28.0 + 7.5 * longest as f64, 20.0 * (styles.len() + 2) as f64)
}

/// Legend at (x, y): one row per series (and the merge marker); returns the next free row.
fn legend(canvas: &mut Canvas, (x, y): (f64, f64), styles: &[SeriesStyle]) -> f64 {
    let mut row = y;
    canvas.text((x, row), "Legend", "start", "font-weight=\"bold\" fill=\"#111\"");
    row += 20.0;
    for style in styles {
        canvas.marker((x + 7.0, row - 4.0), style.merge, 5.0, &format!("fill=\"{}\" stroke=\"#222\"", style.color));
        canvas.text((x + 20.0, row), &style.name, "start", "fill=\"#111\"");
        row += 20.0;
    }
    if styles.iter().any(|s| s.merge) {
        canvas.marker((x + 7.0, row - 4.0), true, 5.0, "fill=\"white\" stroke=\"#222\"");
        canvas.text((x + 20.0, row), "post-hoc merge", "start", "fill=\"#111\"");
        row += 20.0;
    }
    row
}

/// Domain change (x) against general change (y), one point per (method, LR, α, axes), with 95%
/// intervals on both axes, the LR beside each point, the frontier and the base at the origin.
pub fn pareto_svg(summary: &Summary) -> String {
    let (left, top, right, bottom): (f64, f64, f64, f64) = (90.0, 50.0, 720.0, 550.0);
    let points = &summary.points;
    let styles = series_styles(points);
    // The legend's notes need about 215 px and its rows run below the series names.
    let (legend_w, legend_h) = legend_size(&styles);
    let (width, height) = (right + 40.0 + legend_w.max(215.0), (bottom + 70.0).max(top + legend_h + 130.0));
    let x = Linear::covering(points.iter().flat_map(|p| whiskers(&p.domain)), left, right);
    let y = Linear::covering(points.iter().flat_map(|p| whiskers(&p.general)), bottom, top);
    let mut canvas = Canvas::new(width, height);
    canvas.text(
        (left, 28.0),
        "Domain vs general score change against the base (mean over seeds, 95% intervals)",
        "start",
        "font-size=\"16\" font-weight=\"bold\" fill=\"#111\"",
    );
    let eval = &summary.provenance.eval;
    let frame = Frame {
        left,
        top,
        right,
        bottom,
        x_title: &format!("Δ domain score ({})", eval.domain_tasks.join(", ")),
        y_title: &format!("Δ general score ({})", eval.general_tasks.join(", ")),
    };
    let x_ticks: Vec<(f64, String)> = x.ticks().into_iter().map(|(v, l)| (x.map(v), l)).collect();
    let y_ticks: Vec<(f64, String)> = y.ticks().into_iter().map(|(v, l)| (y.map(v), l)).collect();
    frame.draw(&mut canvas, &x_ticks, &y_ticks);
    let axis_style = "stroke=\"#888\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"";
    canvas.line((x.map(0.0), top), (x.map(0.0), bottom), axis_style);
    canvas.line((left, y.map(0.0)), (right, y.map(0.0)), axis_style);
    draw_frontier(&mut canvas, summary, &x, &y);
    let at = |p: &Point| (x.map(p.domain.delta), y.map(p.general.delta));
    for p in points {
        let ([x_lo, x_hi], [y_lo, y_hi]) = (whiskers(&p.domain), whiskers(&p.general));
        let bars = ([x.map(x_lo), x.map(x_hi)], [y.map(y_lo), y.map(y_hi)]);
        draw_marker(&mut canvas, p, color_of(&styles, &p.series), at(p), bars, p.pareto);
    }
    let labelled: Vec<(&Point, (f64, f64))> = points.iter().map(|p| (p, at(p))).collect();
    draw_labels(&mut canvas, &labelled, [left, top, right, bottom]);
    draw_base(&mut canvas, (x.map(0.0), y.map(0.0)));
    let row = legend(&mut canvas, (right + 24.0, top + 10.0), &styles);
    let notes = ["Labels: learning rate", "(merges: α and the LR merged)", "Up and right is better."];
    legend_marks(&mut canvas, (right + 24.0, row), &notes);
    canvas.finish("Pareto plot: domain against general score change")
}

/// The legend's rows below the series: the base, the frontier and its markers, then `notes`.
fn legend_marks(canvas: &mut Canvas, (x, row): (f64, f64), notes: &[&str]) {
    canvas.raw(&format!(
        "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#111\"/>",
        px(x + 2.0),
        px(row - 9.0)
    ));
    canvas.text((x + 20.0, row), "base (origin)", "start", "fill=\"#111\"");
    canvas.line((x, row + 16.0), (x + 14.0, row + 16.0), "stroke=\"#222\" stroke-width=\"2\" stroke-dasharray=\"6 3\"");
    canvas.text((x + 20.0, row + 20.0), "Pareto frontier", "start", "fill=\"#111\"");
    canvas.marker((x + 7.0, row + 36.0), false, 7.0, "fill=\"none\" stroke=\"#111\" stroke-width=\"2\"");
    canvas.text((x + 20.0, row + 40.0), "on the frontier", "start", "fill=\"#111\"");
    for (i, note) in notes.iter().enumerate() {
        canvas.text((x, row + 64.0 + 16.0 * i as f64), note, "start", "fill=\"#555\" font-size=\"12\"");
    }
}

/// The base: a black square at the origin, labelled.
fn draw_base(canvas: &mut Canvas, (ox, oy): (f64, f64)) {
    canvas.raw(&format!(
        "<rect x=\"{}\" y=\"{}\" width=\"11\" height=\"11\" fill=\"#111\"/>",
        px(ox - 5.5),
        px(oy - 5.5)
    ));
    canvas.text((ox + 9.0, oy + 18.0), "base", "start", "font-weight=\"bold\" fill=\"#111\"");
}

/// A point with both ΔL measured: its (domain, general) mean over seeds and the seeds' ranges.
struct Measured<'a> {
    point: &'a Point,
    mean: (f64, f64),
    domain_range: [f64; 2],
    general_range: [f64; 2],
}

/// The points with both ΔL measured.
fn measured(summary: &Summary) -> Vec<Measured<'_>> {
    let range = |r: Option<[f64; 2]>, v: f64| r.unwrap_or([v, v]);
    summary
        .points
        .iter()
        .filter_map(|p| {
            let (d, g) = (p.delta_l_domain?, p.delta_l_general?);
            Some(Measured {
                point: p,
                mean: (d, g),
                domain_range: range(p.delta_l_domain_seed_range, d),
                general_range: range(p.delta_l_general_seed_range, g),
            })
        })
        .collect()
}

/// The code-length plane's frontier (lower and left is better, the base among the candidates)
/// as a dashed line; returns which points are on it.
fn draw_lower_left_frontier(
    canvas: &mut Canvas,
    points: &[Measured],
    at: impl Fn((f64, f64)) -> (f64, f64),
) -> Vec<bool> {
    let negated: Vec<(f64, f64)> = points.iter().map(|m| (-m.mean.0, -m.mean.1)).collect();
    let on = frontier(&negated);
    let members = points.iter().zip(&on.points).filter(|(_, &on)| on).map(|(m, _)| m.mean);
    frontier_line(canvas, members.collect(), on.base, at);
    on.points
}

/// ΔL on held-out domain references (x) against ΔL on general data (y: the base's own answers, or
/// the written references of `analyze.general_data`), one
/// point per (method, LR, α, axes), bars over the seeds' range, the frontier of that plane (lower
/// and left is better: the domain learned, the model's own behaviour kept) and the base at the
/// origin, on signed-log axes. None when no point has both (the sweep has no `[analyze]`).
pub fn code_length_svg(summary: &Summary) -> Option<String> {
    let points = measured(summary);
    if points.is_empty() {
        return None;
    }
    let (left, top, right, bottom): (f64, f64, f64, f64) = (90.0, 50.0, 720.0, 550.0);
    let styles = series_styles(&summary.points);
    let (legend_w, legend_h) = legend_size(&styles);
    let (width, height) = (right + 40.0 + legend_w.max(235.0), (bottom + 70.0).max(top + legend_h + 150.0));
    let x = SignedLog::covering(points.iter().flat_map(|m| m.domain_range), left, right);
    let y = SignedLog::covering(points.iter().flat_map(|m| m.general_range), bottom, top);
    let mut canvas = Canvas::new(width, height);
    canvas.text(
        (left, 28.0),
        "Code-length change against the base (mean over seeds; bars: the seeds' range)",
        "start",
        "font-size=\"16\" font-weight=\"bold\" fill=\"#111\"",
    );
    let origin = (x.map(0.0), y.map(0.0));
    canvas.raw(&format!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#59a14f\" fill-opacity=\"0.10\"/>",
        px(left),
        px(origin.1),
        px(origin.0 - left),
        px(bottom - origin.1)
    ));
    let (y_title, kept) = match summary.provenance.general_data {
        None => (
            "ΔL general, nats/token on the base's own answers (up: forgot)",
            "learned the domain, kept its own answers",
        ),
        Some(_) => (
            "ΔL general, nats/token on written references (up: forgot)",
            "learned the domain, kept the general references",
        ),
    };
    let frame = Frame {
        left,
        top,
        right,
        bottom,
        x_title: "ΔL domain, nats/token on held-out references (left: learned)",
        y_title,
    };
    let x_ticks: Vec<(f64, String)> = x.ticks(34.0).into_iter().map(|(v, l)| (x.map(v), l)).collect();
    let y_ticks: Vec<(f64, String)> = y.ticks(20.0).into_iter().map(|(v, l)| (y.map(v), l)).collect();
    frame.draw(&mut canvas, &x_ticks, &y_ticks);
    let axis_style = "stroke=\"#888\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"";
    canvas.line((origin.0, top), (origin.0, bottom), axis_style);
    canvas.line((left, origin.1), (right, origin.1), axis_style);
    canvas.text((left + 8.0, bottom - 10.0), kept, "start", "fill=\"#2d6a27\" font-size=\"12\"");
    let at = |(d, g): (f64, f64)| (x.map(d), y.map(g));
    let on_frontier = draw_lower_left_frontier(&mut canvas, &points, at);
    for (m, &on) in points.iter().zip(&on_frontier) {
        let bars = (
            [x.map(m.domain_range[0]), x.map(m.domain_range[1])],
            [y.map(m.general_range[0]), y.map(m.general_range[1])],
        );
        draw_marker(&mut canvas, m.point, color_of(&styles, &m.point.series), at(m.mean), bars, on);
    }
    let labelled: Vec<(&Point, (f64, f64))> = points.iter().map(|m| (m.point, at(m.mean))).collect();
    draw_labels(&mut canvas, &labelled, [left, top, right, bottom]);
    draw_base(&mut canvas, origin);
    let row = legend(&mut canvas, (right + 24.0, top + 10.0), &styles);
    let notes = [
        "Labels: learning rate",
        "Down and left is better.",
        "Signed-log axes: about linear",
        "within ±0.03, logarithmic beyond.",
    ];
    legend_marks(&mut canvas, (right + 24.0, row), &notes);
    Some(canvas.finish("Code-length change: domain against general ΔL"))
}

/// The frontier through its members (and the base when it is one), left to right.
fn draw_frontier(canvas: &mut Canvas, summary: &Summary, x: &Linear, y: &Linear) {
    let members = summary.points.iter().filter(|p| p.pareto).map(|p| (p.domain.delta, p.general.delta));
    frontier_line(canvas, members.collect(), summary.base_on_frontier, |(dx, dy)| (x.map(dx), y.map(dy)));
}

/// The dashed line through a frontier's `members` (and the base at the origin when it is one),
/// left to right, each placed by `at`.
fn frontier_line(canvas: &mut Canvas, mut members: Vec<(f64, f64)>, base: bool, at: impl Fn((f64, f64)) -> (f64, f64)) {
    if base {
        members.push((0.0, 0.0));
    }
    members.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    if members.len() > 1 {
        let pixels: Vec<(f64, f64)> = members.into_iter().map(at).collect();
        canvas.polyline(&pixels, "stroke=\"#222\" stroke-width=\"2\" stroke-dasharray=\"6 3\"");
    }
}

/// A point's marker at `center` with its bars (pixel ends on x and y), ringed when on the frontier.
fn draw_marker(
    canvas: &mut Canvas,
    p: &Point,
    color: &str,
    center: (f64, f64),
    bars: ([f64; 2], [f64; 2]),
    ring: bool,
) {
    let bar = format!("stroke=\"{color}\" stroke-width=\"1.6\"");
    let ([x_lo, x_hi], [y_lo, y_hi]) = bars;
    canvas.line((x_lo, center.1), (x_hi, center.1), &bar);
    canvas.line((center.0, y_lo), (center.0, y_hi), &bar);
    for end in [x_lo, x_hi] {
        canvas.line((end, center.1 - 4.0), (end, center.1 + 4.0), &bar);
    }
    for end in [y_lo, y_hi] {
        canvas.line((center.0 - 4.0, end), (center.0 + 4.0, end), &bar);
    }
    let merge = p.kind == "merge";
    if ring {
        canvas.marker(center, merge, 9.5, "fill=\"none\" stroke=\"#111\" stroke-width=\"2\"");
    }
    canvas.marker(center, merge, 6.0, &format!("fill=\"{color}\" stroke=\"#222\""));
}

/// A box (x0, y0, x1, y1) in pixels.
type Bounds = [f64; 4];

fn intersects(a: &Bounds, b: &Bounds) -> bool {
    a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
}

/// Label each point with its LR (and α for merges) at the first spot around it inside `frame`
/// that covers no marker and no label placed before; where every spot is taken, the first one.
fn draw_labels(canvas: &mut Canvas, points: &[(&Point, (f64, f64))], frame: Bounds) {
    let mut taken: Vec<Bounds> = points.iter().map(|&(_, (cx, cy))| [cx - 8.0, cy - 8.0, cx + 8.0, cy + 8.0]).collect();
    for &(p, (cx, cy)) in points {
        let label = match p.alpha {
            Some(alpha) => format!("α={} · {}", fmt_number(alpha), fmt_lr(p.lr)),
            None => fmt_lr(p.lr),
        };
        // DejaVu Sans at 12 px averages about 7 px per character.
        let width = 7.0 * label.chars().count() as f64;
        let spots = [(10.0, -8.0), (10.0, 17.0), (-10.0, -8.0), (-10.0, 17.0), (10.0, -22.0), (-10.0, 31.0)];
        let bounds = |(dx, dy): (f64, f64)| {
            let x0 = if dx > 0.0 { cx + dx } else { cx + dx - width };
            [x0, cy + dy - 11.0, x0 + width, cy + dy + 3.0]
        };
        let inside = |b: &Bounds| b[0] >= frame[0] && b[1] >= frame[1] && b[2] <= frame[2] && b[3] <= frame[3];
        let free = |s: (f64, f64)| inside(&bounds(s)) && !taken.iter().any(|t| intersects(t, &bounds(s)));
        let spot = spots.into_iter().find(|&s| free(s)).unwrap_or(spots[0]);
        taken.push(bounds(spot));
        let anchor = if spot.0 > 0.0 { "start" } else { "end" };
        let style = "font-size=\"12\" fill=\"#111\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\"";
        canvas.text((cx + spot.0, cy + spot.1), &label, anchor, style);
    }
}

/// Score change against log LR, one line per series, one panel for domain and one for
/// general; the band spans the seeds' smallest to largest change.
pub fn lr_curves_svg(summary: &Summary) -> String {
    let styles = series_styles(&summary.points);
    let (legend_w, legend_h) = legend_size(&styles);
    let (width, height) = (920.0 + legend_w, 470.0f64.max(80.0 + legend_h));
    let mut canvas = Canvas::new(width, height);
    canvas.text(
        (80.0, 28.0),
        "Score change against learning rate (line: mean over seeds; band: range over seeds)",
        "start",
        "font-size=\"16\" font-weight=\"bold\" fill=\"#111\"",
    );
    let panels = [("domain", 90.0, 440.0), ("general", 530.0, 880.0)];
    for (which, left, right) in panels {
        draw_lr_panel(&mut canvas, summary, &styles, which, (left, right));
    }
    legend(&mut canvas, (905.0, 60.0), &styles);
    canvas.finish("Score change against learning rate, per method")
}

fn draw_lr_panel(
    canvas: &mut Canvas,
    summary: &Summary,
    styles: &[SeriesStyle],
    which: &str,
    (left, right): (f64, f64),
) {
    let (top, bottom) = (60.0, 390.0);
    let score = |p: &Point| if which == "domain" { p.domain } else { p.general };
    let points = &summary.points;
    let x = LogLr::new(points.iter().map(|p| p.lr).collect(), left, right);
    let y = Linear::covering(points.iter().flat_map(|p| score(p).seed_range), bottom, top);
    let eval = &summary.provenance.eval;
    let tasks = if which == "domain" { &eval.domain_tasks } else { &eval.general_tasks };
    let y_title = format!("Δ {which} score ({})", tasks.join(", "));
    let frame = Frame { left, top, right, bottom, x_title: "learning rate (log scale)", y_title: &y_title };
    let x_ticks: Vec<(f64, String)> = x.rates.iter().map(|&r| (x.map(r), fmt_lr(r))).collect();
    let y_ticks: Vec<(f64, String)> = y.ticks().into_iter().map(|(v, l)| (y.map(v), l)).collect();
    frame.draw(canvas, &x_ticks, &y_ticks);
    canvas.line(
        (left, y.map(0.0)),
        (right, y.map(0.0)),
        "stroke=\"#111\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"",
    );
    canvas.text((right - 6.0, y.map(0.0) - 6.0), "base", "end", "font-size=\"12\" fill=\"#111\"");
    for SeriesStyle { name, color, .. } in styles {
        let mut members: Vec<&Point> = points.iter().filter(|p| &p.series == name).collect();
        members.sort_by(|a, b| a.lr.total_cmp(&b.lr));
        let upper: Vec<(f64, f64)> = members.iter().map(|p| (x.map(p.lr), y.map(score(p).seed_range[1]))).collect();
        let lower = members.iter().rev().map(|p| (x.map(p.lr), y.map(score(p).seed_range[0])));
        let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
        canvas.polygon(
            &band,
            &format!("fill=\"{color}\" fill-opacity=\"0.18\" stroke=\"{color}\" stroke-opacity=\"0.35\""),
        );
        let line: Vec<(f64, f64)> = members.iter().map(|p| (x.map(p.lr), y.map(score(p).delta))).collect();
        canvas.polyline(&line, &format!("stroke=\"{color}\" stroke-width=\"2.2\""));
        for (p, &center) in members.iter().zip(&line) {
            canvas.marker(center, p.kind == "merge", 4.5, &format!("fill=\"{color}\" stroke=\"#222\""));
        }
    }
    canvas.text(
        ((left + right) / 2.0, top - 10.0),
        &format!("{which} score"),
        "middle",
        "font-size=\"14\" font-weight=\"bold\" fill=\"#111\"",
    );
}
