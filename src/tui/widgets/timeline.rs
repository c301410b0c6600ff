//! The Gantt timeline: one lane per worker and stage (render threads or processes, the device
//! thread's stages), stage calls drawn as blocks over a window that scrolls with the run, so
//! overlap — or its absence — shows at a glance.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

use crate::metrics::live::LiveSpan;

/// Columns for lane labels.
const LABEL_WIDTH: u16 = 14;

/// A stage's color, the same everywhere in the TUI.
pub fn stage_color(stage: &str) -> Color {
    match stage {
        "render" => Color::Cyan,
        "layout" => Color::Yellow,
        "ocr" => Color::Green,
        "table" => Color::Magenta,
        "figure" => Color::Blue,
        _ => Color::Gray,
    }
}

pub struct Timeline<'a> {
    pub lanes: &'a [String],
    pub spans: &'a [LiveSpan],
    /// The window's right edge (now) and width, in the run clock's nanoseconds.
    pub now_ns: u64,
    pub window_ns: u64,
}

impl Widget for Timeline<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width <= LABEL_WIDTH + 2 || area.height < 2 {
            return;
        }
        let plot_w = area.width - LABEL_WIDTH;
        let start = self.now_ns.saturating_sub(self.window_ns);
        let per_col = (self.window_ns / plot_w as u64).max(1);
        let lane_rows = (area.height - 1) as usize;
        for (row, lane) in self.lanes.iter().take(lane_rows).enumerate() {
            let y = area.y + row as u16;
            let label: String = lane.chars().take(LABEL_WIDTH as usize - 1).collect();
            buf.set_string(area.x, y, &label, Style::default().fg(Color::Gray));
            for x in 0..plot_w {
                buf[(area.x + LABEL_WIDTH + x, y)]
                    .set_char('·')
                    .set_style(Style::default().fg(Color::DarkGray));
            }
            // Consecutive calls alternate between two shades, so back-to-back batches still
            // read as separate blocks.
            for (k, s) in self.spans.iter().filter(|s| &s.lane == lane).enumerate() {
                if s.end_ns < start || s.start_ns > self.now_ns {
                    continue;
                }
                let c0 = (s.start_ns.max(start) - start) / per_col;
                let c1 = (s.end_ns.min(self.now_ns) - start) / per_col;
                let (ch, color) = if s.ok {
                    (if k % 2 == 0 { '█' } else { '▓' }, stage_color(&s.stage))
                } else {
                    ('×', Color::Red)
                };
                for c in c0..=c1.min(plot_w as u64 - 1) {
                    buf[(area.x + LABEL_WIDTH + c as u16, y)]
                        .set_char(ch)
                        .set_style(Style::default().fg(color));
                }
            }
        }
        // Time axis: the window's left edge and "now".
        let y = area.y + area.height - 1;
        let left = format!("-{:.0}s", self.window_ns as f64 / 1e9);
        buf.set_string(
            area.x + LABEL_WIDTH,
            y,
            &left,
            Style::default().fg(Color::DarkGray),
        );
        buf.set_string(
            area.x + area.width - 3,
            y,
            "now",
            Style::default().fg(Color::DarkGray),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(lane: &str, stage: &str, start_s: f64, end_s: f64, ok: bool) -> LiveSpan {
        LiveSpan {
            lane: lane.into(),
            stage: stage.into(),
            start_ns: (start_s * 1e9) as u64,
            end_ns: (end_s * 1e9) as u64,
            items: 1,
            ok,
        }
    }

    fn row(buf: &Buffer, y: u16) -> String {
        (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect()
    }

    #[test]
    fn spans_become_blocks_on_their_lane_at_their_time() {
        let lanes = vec!["render-thread:0".to_string(), "device·ocr".to_string()];
        let spans = vec![
            span("render-thread:0", "render", 0.0, 1.0, true),
            span("device·ocr", "ocr", 1.0, 4.9, true),
            span("device·ocr", "ocr", 5.0, 9.9, true),
            span("device·ocr", "ocr", 15.0, 16.0, false),
        ];
        // 20 plot columns over 20 s: one second per column.
        let area = Rect::new(0, 0, LABEL_WIDTH + 20, 3);
        let mut buf = Buffer::empty(area);
        Timeline {
            lanes: &lanes,
            spans: &spans,
            now_ns: 20_000_000_000,
            window_ns: 20_000_000_000,
        }
        .render(area, &mut buf);
        let render = row(&buf, 0);
        let ocr = row(&buf, 1);
        assert!(render.starts_with("render-thread"), "{render}");
        let plot = |s: &str| s.chars().skip(LABEL_WIDTH as usize).collect::<String>();
        assert_eq!(plot(&render), "██··················");
        // Back-to-back calls alternate shades; a failed call is crossed out.
        assert_eq!(plot(&ocr), "·████▓▓▓▓▓·····××···");
        assert_eq!(
            buf[(LABEL_WIDTH + 1, 1)].fg,
            stage_color("ocr"),
            "OCR blocks are OCR's color"
        );
        assert!(row(&buf, 2).contains("-20s") && row(&buf, 2).ends_with("now"));
    }

    #[test]
    fn old_spans_scroll_out_of_the_window() {
        let lanes = vec!["device·layout".to_string()];
        let spans = vec![span("device·layout", "layout", 0.0, 1.0, true)];
        let area = Rect::new(0, 0, LABEL_WIDTH + 10, 2);
        let mut buf = Buffer::empty(area);
        Timeline {
            lanes: &lanes,
            spans: &spans,
            now_ns: 30_000_000_000,
            window_ns: 10_000_000_000,
        }
        .render(area, &mut buf);
        assert!(!row(&buf, 0).contains('█'));
    }
}
