//! Hand-written SVG: a canvas, linear and log axes with ticks, and text escaping. No
//! dependency, and the same input always gives the same bytes.

use std::fmt::Write;

/// Series colors: Tableau 10, readable on white and distinct for the common color blindnesses,
/// then three darker Tableau 20 colors, so that a sweep of up to 13 series repeats none.
pub(crate) const PALETTE: [&str; 13] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#499894", "#b6992d", "#79706e",
];

/// The xmlns a standalone .svg file needs; inline SVG in HTML does without it.
pub(crate) const SVG_NAMESPACE: &str = " xmlns=\"http://www.w3.org/2000/svg\"";

/// Escape text for XML/HTML content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A coordinate with at most two decimals: short, stable output.
pub(crate) fn px(x: f64) -> String {
    let text = format!("{x:.2}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// An SVG document being written.
pub(crate) struct Canvas {
    body: String,
    width: f64,
    height: f64,
}

impl Canvas {
    pub fn new(width: f64, height: f64) -> Self {
        Canvas { body: String::new(), width, height }
    }

    /// Append raw SVG elements.
    pub fn raw(&mut self, element: &str) {
        self.body.push_str(element);
        self.body.push('\n');
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), style: &str) {
        self.raw(&format!("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {style}/>", px(x1), px(y1), px(x2), px(y2)));
    }

    /// Text anchored `anchor` (start, middle, end) at (x, y).
    pub fn text(&mut self, (x, y): (f64, f64), text: &str, anchor: &str, style: &str) {
        self.raw(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" {style}>{}</text>",
            px(x),
            px(y),
            escape(text)
        ));
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], style: &str) {
        let mut coords = String::new();
        for (x, y) in points {
            let _ = write!(coords, "{},{} ", px(*x), px(*y));
        }
        self.raw(&format!("<polyline points=\"{}\" fill=\"none\" {style}/>", coords.trim_end()));
    }

    pub fn polygon(&mut self, points: &[(f64, f64)], style: &str) {
        let coords: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", px(*x), px(*y))).collect();
        self.raw(&format!("<polygon points=\"{}\" {style}/>", coords.join(" ")));
    }

    /// A marker: circle for trained points, diamond for post-hoc merges.
    pub fn marker(&mut self, (x, y): (f64, f64), diamond: bool, size: f64, style: &str) {
        if diamond {
            let s = size * 1.3;
            self.polygon(&[(x, y - s), (x + s, y), (x, y + s), (x - s, y)], style);
        } else {
            self.raw(&format!("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" {style}/>", px(x), px(y), px(size)));
        }
    }

    /// The finished document, titled for screen readers and tooltips.
    pub fn finish(self, title: &str) -> String {
        format!(
            "<svg{SVG_NAMESPACE} width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Arial, \
             sans-serif\" font-size=\"13\">\n<title>{}</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            escape(title),
            self.body,
            w = px(self.width),
            h = px(self.height)
        )
    }
}

/// A 1-2-5 step giving about `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| m * magnitude >= raw).unwrap_or(10.0);
    step * magnitude
}

/// A linear axis from data `lo..hi` onto pixels `from..to` (to may be below from, for y).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linear {
    pub lo: f64,
    pub hi: f64,
    pub from: f64,
    pub to: f64,
}

impl Linear {
    /// An axis covering `values` and zero, padded by 8% each side.
    pub fn covering(values: impl Iterator<Item = f64>, from: f64, to: f64) -> Self {
        let (mut lo, mut hi) =
            values.filter(|v| v.is_finite()).fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
        if hi - lo < 1e-9 {
            (lo, hi) = (lo - 0.01, hi + 0.01);
        }
        let pad = 0.08 * (hi - lo);
        Linear { lo: lo - pad, hi: hi + pad, from, to }
    }

    pub fn map(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Tick values and their labels (signed: these axes are changes against the base).
    pub fn ticks(&self) -> Vec<(f64, String)> {
        let step = nice_step(self.hi - self.lo, 6.0);
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        let first = (self.lo / step).ceil() as i64;
        let last = (self.hi / step).floor() as i64;
        (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                let label = if k == 0 { "0".to_string() } else { format!("{v:+.decimals$}") };
                (v, label)
            })
            .collect()
    }
}

/// A signed-log axis for changes that span orders of magnitude either side of zero (ΔL from
/// −0.3 to +12 nats): `asinh(v / LINEAR)`, about linear within ±LINEAR and logarithmic beyond, so a
/// far outlier does not press the other points into one spot. Ticked at 1-3-10 values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedLog {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl SignedLog {
    const LINEAR: f64 = 0.03;

    fn warp(v: f64) -> f64 {
        (v / Self::LINEAR).asinh()
    }

    /// An axis covering `values` and zero, padded by 6% of the warped span each side.
    pub fn covering(values: impl Iterator<Item = f64>, from: f64, to: f64) -> Self {
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .map(Self::warp)
            .fold((Self::warp(-Self::LINEAR), Self::warp(Self::LINEAR)), |(l, h), v| (l.min(v), h.max(v)));
        let pad = 0.06 * (hi - lo);
        SignedLog { lo: lo - pad, hi: hi + pad, from, to }
    }

    pub fn map(&self, v: f64) -> f64 {
        self.from + (Self::warp(v) - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Zero and ±0.03, ±0.1, ±0.3, ±1, … inside the axis, skipping any closer than `gap` pixels
    /// to the tick before it (counted outward from zero).
    pub fn ticks(&self, gap: f64) -> Vec<(f64, String)> {
        let magnitudes = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0];
        let inside = |v: f64| (self.lo..=self.hi).contains(&Self::warp(v));
        let mut ticks = vec![(0.0, "0".to_string())];
        for sign in [-1.0, 1.0] {
            let mut last = self.map(0.0);
            for m in magnitudes {
                let v = sign * m;
                if inside(v) && (self.map(v) - last).abs() >= gap {
                    last = self.map(v);
                    ticks.push((v, format!("{v:+}")));
                }
            }
        }
        ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
        ticks
    }
}

/// A log10 axis over learning rates, ticked at the rates the sweep used.
#[derive(Debug, Clone)]
pub(crate) struct LogLr {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    pub rates: Vec<f64>,
}

impl LogLr {
    pub fn new(mut rates: Vec<f64>, from: f64, to: f64) -> Self {
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let logs: Vec<f64> = rates.iter().map(|r| r.log10()).collect();
        let (lo, hi) = (logs.first().copied().unwrap_or(-5.0), logs.last().copied().unwrap_or(-5.0));
        // Half a decade either side of a single rate; a tenth of the span otherwise.
        let pad = if hi - lo < 1e-9 { 0.5 } else { 0.1 * (hi - lo) };
        LogLr { lo: lo - pad, hi: hi + pad, from, to, rates }
    }

    pub fn map(&self, lr: f64) -> f64 {
        self.from + (lr.log10() - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

/// The plot area of a panel: frame, grid, tick labels on both axes, axis titles.
pub(crate) struct Frame<'a> {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    pub x_title: &'a str,
    pub y_title: &'a str,
}

impl Frame<'_> {
    /// Grid lines and labels for x ticks at (pixel, label) and y ticks likewise.
    pub fn draw(&self, canvas: &mut Canvas, x_ticks: &[(f64, String)], y_ticks: &[(f64, String)]) {
        let grid = "stroke=\"#e3e3e3\" stroke-width=\"1\"";
        for (x, label) in x_ticks {
            canvas.line((*x, self.top), (*x, self.bottom), grid);
            canvas.line((*x, self.bottom), (*x, self.bottom + 5.0), "stroke=\"#333\"");
            canvas.text((*x, self.bottom + 19.0), label, "middle", "fill=\"#222\"");
        }
        for (y, label) in y_ticks {
            canvas.line((self.left, *y), (self.right, *y), grid);
            canvas.line((self.left - 5.0, *y), (self.left, *y), "stroke=\"#333\"");
            canvas.text((self.left - 8.0, *y + 4.0), label, "end", "fill=\"#222\"");
        }
        canvas.raw(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
            px(self.left),
            px(self.top),
            px(self.right - self.left),
            px(self.bottom - self.top)
        ));
        canvas.text(
            ((self.left + self.right) / 2.0, self.bottom + 42.0),
            self.x_title,
            "middle",
            "font-size=\"14\" fill=\"#111\"",
        );
        let (cx, cy) = (self.left - 58.0, (self.top + self.bottom) / 2.0);
        canvas.raw(&format!(
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#111\" transform=\"rotate(-90 {x} {y})\">{}</text>",
            escape(self.y_title),
            x = px(cx),
            y = px(cy)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_zero() {
        let axis = Linear::covering([-0.12, 0.31].into_iter(), 0.0, 100.0);
        let ticks = axis.ticks();
        assert!(ticks.iter().any(|(v, l)| *v == 0.0 && l == "0"));
        assert!(ticks.iter().all(|(v, _)| *v >= axis.lo && *v <= axis.hi));
        assert!(ticks.len() >= 4 && ticks.len() <= 12, "{ticks:?}");
        assert!(ticks.iter().any(|(_, l)| l == "+0.1") && ticks.iter().any(|(_, l)| l == "-0.1"), "{ticks:?}");
    }

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }

    #[test]
    fn signed_log_is_linear_near_zero_and_keeps_order_and_sign() {
        let axis = SignedLog::covering([-0.35, 12.5].into_iter(), 0.0, 600.0);
        let (zero, small, tiny) = (axis.map(0.0), axis.map(0.01), axis.map(0.005));
        assert!(((small - zero) - 2.0 * (tiny - zero)).abs() < 0.03 * (small - zero), "about linear within ±0.03");
        let order = [-0.35, -0.1, 0.0, 0.1, 1.0, 12.5].map(|v| axis.map(v));
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!((0.0..=600.0).contains(&axis.map(12.5)) && (0.0..=600.0).contains(&axis.map(-0.35)));
        // 12.5 takes less than half the axis: the points near zero keep their room.
        assert!(axis.map(12.5) - axis.map(1.0) < 0.5 * 600.0);
        let labels: Vec<String> = axis.ticks(20.0).into_iter().map(|(_, l)| l).collect();
        for wanted in ["-0.1", "0", "+0.1", "+1", "+10"] {
            assert!(labels.iter().any(|l| l == wanted), "{wanted} missing from {labels:?}");
        }
        assert!(!labels.iter().any(|l| l == "+30" || l == "-1"), "ticks outside the data: {labels:?}");
    }

    #[test]
    fn log_axis_orders_rates() {
        let axis = LogLr::new(vec![1e-5, 1e-6, 1e-5], 0.0, 100.0);
        assert_eq!(axis.rates, vec![1e-6, 1e-5]);
        assert!(axis.map(1e-6) < axis.map(1e-5));
    }
}
