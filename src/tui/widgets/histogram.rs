//! A latency histogram: log-spaced buckets as vertical bars, with p50, p90 and p99 marked
//! under the bars and written out below them.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

use crate::metrics::live::HistogramView;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A duration for humans: `850 µs`, `12.3 ms`, `1.6 s`.
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.1} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

pub struct Histogram<'a> {
    pub view: &'a HistogramView,
    pub color: Color,
}

impl Histogram<'_> {
    /// The column of the bucket holding `ns`.
    fn column(&self, ns: u64, width: u16) -> u16 {
        let n = self.view.buckets.len().max(1);
        let i = self
            .view
            .buckets
            .iter()
            .position(|(upper, _)| ns <= *upper)
            .unwrap_or(n - 1);
        ((i as f64 + 0.5) / n as f64 * width as f64) as u16
    }
}

impl Widget for Histogram<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.height < 3 || area.width < 8 {
            return;
        }
        let v = self.view;
        if v.count == 0 {
            buf.set_string(
                area.x,
                area.y,
                "no data yet",
                Style::default().fg(Color::DarkGray),
            );
            return;
        }
        let bar_rows = area.height - 2;
        let max = v.buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        let n = v.buckets.len().max(1) as u16;
        for x in 0..area.width {
            let b = ((x as u32 * n as u32) / area.width as u32) as usize;
            let count = v.buckets.get(b).map_or(0, |b| b.1);
            if count == 0 {
                continue;
            }
            // Height in eighths of a row; any non-empty bucket shows at least a sliver.
            let eighths = ((count as f64 / max as f64) * (bar_rows as f64 * 8.0)).ceil() as u16;
            for r in 0..bar_rows {
                let filled = eighths.saturating_sub(r * 8).min(8);
                if filled == 0 {
                    break;
                }
                let y = area.y + bar_rows - 1 - r;
                buf[(area.x + x, y)]
                    .set_char(BARS[filled as usize - 1])
                    .set_style(Style::default().fg(self.color));
            }
        }
        // Markers under the bars: 5, 9 and P at the percentiles' buckets; one sharing a bucket
        // with the previous one moves a column right, so all three stay readable.
        let marks = area.y + bar_rows;
        let mut next_free = 0u16;
        for (ns, ch) in [(v.p50_ns, '5'), (v.p90_ns, '9'), (v.p99_ns, 'P')] {
            let x = self
                .column(ns, area.width)
                .max(next_free)
                .min(area.width - 1);
            next_free = x + 1;
            buf[(area.x + x, marks)]
                .set_char(ch)
                .set_style(Style::default().fg(Color::White));
        }
        let label = format!(
            "p50 {}  p90 {}  p99 {}  max {}  (n={})",
            duration(v.p50_ns),
            duration(v.p90_ns),
            duration(v.p99_ns),
            duration(v.max_ns),
            v.count
        );
        buf.set_stringn(
            area.x,
            marks + 1,
            &label,
            area.width as usize,
            Style::default().fg(Color::Gray),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::LatencyHistogram;

    #[test]
    fn bars_markers_and_percentiles_are_drawn() {
        let mut h = LatencyHistogram::new();
        for _ in 0..90 {
            h.record(1_000_000);
        }
        for _ in 0..10 {
            h.record(100_000_000);
        }
        let view = HistogramView::of(&h);
        let area = Rect::new(0, 0, 48, 5);
        let mut buf = Buffer::empty(area);
        Histogram {
            view: &view,
            color: Color::Green,
        }
        .render(area, &mut buf);
        let row =
            |y: u16| -> String { (0..48).map(|x| buf[(x, y)].symbol().to_string()).collect() };
        // The tall bar (90 values) fills the first column; the short one (10) is a sliver at
        // the right end.
        assert_eq!(buf[(0, 0)].symbol(), "█");
        assert_eq!(buf[(47, 0)].symbol(), " ");
        assert_ne!(buf[(47, 2)].symbol(), " ");
        let marks = row(3);
        let p50 = marks.find('5').expect("p50 mark");
        let p99 = marks.find('P').expect("p99 mark");
        assert!(p50 < 4 && p99 > 40, "{marks}");
        assert!(
            row(4).starts_with("p50 1.0 ms  p90 1.0 ms  p99 100.0 ms"),
            "{}",
            row(4)
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850_000), "850 µs");
        assert_eq!(duration(12_345_678), "12.3 ms");
        assert_eq!(duration(1_600_000_000), "1.6 s");
    }
}
