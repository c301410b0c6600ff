//! Small self-contained SVG charts (scatter and line) for sweep summaries: axes with round
//! ticks, labelled points, a legend. No dependencies: the files open in any browser.

/// One series: a name and its points (x, y, label).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, String)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Join each series' points in x order.
    pub lines: bool,
}

const W: f64 = 780.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 260.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// Round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
    (first..=last).map(|k| k as f64 * step).collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Chart {
    pub fn svg(&self) -> String {
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| (p.0, p.1)))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let (mut x0, mut x1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if all.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        // Start the y axis at zero (throughput and times are ratios to zero), pad x.
        y0 = y0.min(0.0);
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let pad = ((x1 - x0) * 0.08).max(if x1 == x0 { x0.abs() * 0.1 + 1.0 } else { 0.0 });
        (x0, x1) = (x0 - pad, x1 + pad);
        let (xt, yt) = (ticks(x0, x1), ticks(y0, y1 * 1.05));
        let (x0, x1) = (x0.min(xt[0]), x1.max(*xt.last().unwrap_or(&x1)));
        let (y0, y1) = (y0.min(yt[0]), y1.max(*yt.last().unwrap_or(&y1)));
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        for t in &xt {
            let x = sx(*t);
            s.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                TOP + ph,
                TOP + ph + 18.0,
                num(*t)
            ));
        }
        for t in &yt {
            let y = sy(*t);
            s.push_str(&format!(
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                num(*t)
            ));
        }
        s.push_str(&format!(
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n<text transform=\"translate(20,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            LEFT + pw / 2.0,
            H - 18.0,
            esc(&self.x_label),
            TOP + ph / 2.0,
            esc(&self.y_label)
        ));
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut pts = series.points.clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if self.lines && pts.len() > 1 {
                let path: Vec<String> = pts
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
                    .collect();
                s.push_str(&format!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
                    path.join(" ")
                ));
            }
            for (x, y, label) in &pts {
                s.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{}</title></circle>\n",
                    sx(*x),
                    sy(*y),
                    esc(label)
                ));
                if !label.is_empty() {
                    s.push_str(&format!(
                        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#555\">{}</text>\n",
                        sx(*x) + 6.0,
                        sy(*y) - 5.0,
                        esc(label)
                    ));
                }
            }
            let ly = TOP + 14.0 + i as f64 * 18.0;
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                W - RIGHT + 16.0,
                ly - 4.0,
                W - RIGHT + 26.0,
                ly,
                esc(&series.name)
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.13, 0.87);
        assert!(t[0] <= 0.13 && *t.last().expect("ticks") >= 0.87, "{t:?}");
    }

    #[test]
    fn a_chart_has_its_title_axes_points_and_legend() {
        let svg = Chart {
            title: "pages/s vs p99 <latency>".into(),
            x_label: "p99 page latency (ms)".into(),
            y_label: "pages/s".into(),
            series: vec![Series {
                name: "staged".into(),
                points: vec![(100.0, 2.0, "b=1".into()), (300.0, 3.0, "b=4".into())],
            }],
            lines: true,
        }
        .svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("pages/s vs p99 &lt;latency&gt;"));
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "two points and a legend mark"
        );
        assert!(svg.contains("<polyline") && svg.contains(">staged<"));
    }
}
