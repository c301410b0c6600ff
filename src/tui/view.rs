//! The screen: title, progress, timeline, memory, latency, comparison, keys. Usable at 80×24;
//! larger terminals get taller panels.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Gauge, Paragraph, Row, Sparkline, Table};

use super::state::{App, Panel};
use super::widgets::histogram::Histogram;
use super::widgets::timeline::{Timeline, stage_color};
use crate::metrics::live::TIMELINE_WINDOW_NS;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let comparison_rows = (app.strategies.len() as u16 + 3).min(8);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(8),
            Constraint::Length(comparison_rows),
            Constraint::Length(1),
        ])
        .split(area);
    title(f, rows[0], app);
    progress(f, rows[1], app);
    timeline(f, rows[2], app);
    let mid = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(45), Constraint::Percentage(55)])
        .split(rows[3]);
    memory(f, mid[0], app);
    latency(f, mid[1], app);
    comparison(f, rows[4], app);
    footer(f, rows[5], app);
    if app.help {
        help(f, area);
    }
}

fn block(title: String, app: &App, panel: Panel) -> Block<'static> {
    let style = if app.focus == panel {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, Style::default().fg(Color::White)))
}

fn title(f: &mut Frame, area: Rect, app: &App) {
    let index = app.current.map_or(String::new(), |i| {
        format!("[{}/{}] ", i + 1, app.strategies.len())
    });
    let paused = if app.paused {
        " · PAUSED (display)"
    } else {
        ""
    };
    let viewing = app
        .viewing
        .and_then(|i| app.rows.get(i))
        .map_or(String::new(), |r| {
            format!(" · VIEWING {} (finished; ↑ ↓)", r.strategy)
        });
    let line = Line::from(vec![
        Span::styled(
            " pipebench ",
            Style::default().fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(format!(
            " {} · {index}{} · {}{paused}{viewing} · {}",
            app.corpus,
            app.current_name(),
            app.phase,
            app.budget
        )),
    ]);
    // An untrained-weights run says so in every frame, before anything a narrow terminal
    // could cut off (the report's warnings say which stages).
    let line = match &app.shown().notice {
        Some(_) => {
            let mut spans = line.spans;
            spans.insert(
                1,
                Span::styled(
                    " UNTRAINED ",
                    Style::default().fg(Color::Black).bg(Color::Yellow),
                ),
            );
            Line::from(spans)
        }
        None => line,
    };
    f.render_widget(Paragraph::new(line), area);
}

fn progress(f: &mut Frame, area: Rect, app: &App) {
    let s = app.shown();
    let ratio = if s.pages_total == 0 {
        0.0
    } else {
        (s.pages_done as f64 / s.pages_total as f64).clamp(0.0, 1.0)
    };
    let eta = s.eta_s().map_or("–".into(), |e| format!("{e:.0} s"));
    let queues: Vec<String> = s
        .queues
        .iter()
        .map(|q| format!("{} {}/{}", q.stage, q.depth, q.capacity))
        .collect();
    let mut label = format!(
        "{}/{} pages · {:.2} pages/s · ETA {eta} · in flight {}",
        s.pages_done,
        s.pages_total,
        s.pages_per_s(),
        s.pages_in_flight
    );
    if s.pages_failed > 0 {
        label.push_str(&format!(" · {} failed", s.pages_failed));
    }
    if !queues.is_empty() {
        label.push_str(&format!(" · queues {}", queues.join(" ")));
    }
    // Autoregressive stages: their decoders' speed and how full their decode steps are.
    for st in &s.stages {
        if let Some(g) = &st.generation {
            let ns = g.prefill_ns + g.decode_ns;
            let tps = if ns == 0 {
                0.0
            } else {
                g.tokens_generated as f64 / (ns as f64 / 1e9)
            };
            label.push_str(&format!(
                " · {} {tps:.1} tok/s, {:.1} seq/step",
                st.stage,
                g.occupancy()
            ));
        }
    }
    let gauge = Gauge::default()
        .gauge_style(Style::default().fg(Color::Cyan).bg(Color::Black))
        .ratio(ratio)
        .label(label);
    f.render_widget(gauge, area);
}

fn timeline(f: &mut Frame, area: Rect, app: &App) {
    let s = app.shown();
    let b = block(
        format!(" timeline (last {:.0} s) ", TIMELINE_WINDOW_NS as f64 / 1e9),
        app,
        Panel::Timeline,
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    if s.lanes.is_empty() {
        f.render_widget(
            Paragraph::new("waiting for the first stage call…")
                .style(Style::default().fg(Color::DarkGray)),
            inner,
        );
        return;
    }
    f.render_widget(
        Timeline {
            lanes: &s.lanes,
            spans: &s.spans,
            now_ns: s.elapsed_ns,
            window_ns: TIMELINE_WINDOW_NS,
        },
        inner,
    );
}

fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

fn memory(f: &mut Frame, area: Rect, app: &App) {
    let s = app.shown();
    let b = block(" memory ".into(), app, Panel::Memory);
    let inner = b.inner(area);
    f.render_widget(b, area);
    if inner.height < 3 {
        return;
    }
    let last = s.memory.last();
    let total = s.system_total_bytes.max(1);
    let rss = last.map_or(0, |m| m.rss_bytes + m.children_rss_bytes);
    let used = last.map_or(0, |m| m.system_used_bytes);
    let lines = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .split(inner);
    let gauge = |label: String, ratio: f64, color: Color| {
        Gauge::default()
            .gauge_style(Style::default().fg(color).bg(Color::Black))
            .ratio(ratio.clamp(0.0, 1.0))
            .label(label)
    };
    f.render_widget(
        gauge(
            format!("RSS {} of {}", bytes(rss), bytes(total)),
            rss as f64 / total as f64,
            Color::Green,
        ),
        lines[0],
    );
    f.render_widget(
        gauge(
            format!("system {} of {}", bytes(used), bytes(total)),
            used as f64 / total as f64,
            Color::Yellow,
        ),
        lines[1],
    );
    match (
        last.and_then(|m| m.accelerator_used_bytes),
        s.accelerator_total_bytes,
    ) {
        (Some(u), Some(t)) if t > 0 => f.render_widget(
            gauge(
                format!("accelerator {} of {}", bytes(u), bytes(t)),
                u as f64 / t as f64,
                Color::Magenta,
            ),
            lines[2],
        ),
        _ => f.render_widget(
            Paragraph::new("accelerator: none (cpu)").style(Style::default().fg(Color::DarkGray)),
            lines[2],
        ),
    }
    let series: Vec<u64> = s
        .memory
        .iter()
        .map(|m| (m.rss_bytes + m.children_rss_bytes) >> 20)
        .collect();
    let width = lines[3].width as usize;
    let tail = &series[series.len().saturating_sub(width)..];
    f.render_widget(
        Sparkline::default()
            .data(tail)
            .style(Style::default().fg(Color::Green)),
        lines[3],
    );
}

fn latency(f: &mut Frame, area: Rect, app: &App) {
    let s = app.shown();
    let choices = app.histogram_choices();
    let pick = app.histogram.min(choices.len() - 1);
    let (view, color) = if pick == 0 {
        (&s.page_latency, Color::White)
    } else {
        let st = &s.stages[pick - 1];
        (&st.service, stage_color(&st.stage))
    };
    let b = block(format!(" {} ◂ ▸ ", choices[pick]), app, Panel::Latency);
    let inner = b.inner(area);
    f.render_widget(b, area);
    f.render_widget(Histogram { view, color }, inner);
}

fn comparison(f: &mut Frame, area: Rect, app: &App) {
    let header = Row::new(
        [
            "strategy",
            "wall",
            "pages/s",
            "p99 page",
            "peak RSS",
            "eff",
            "output digest",
        ]
        .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
    );
    let mut rows: Vec<Row> =
        app.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let output = match r.digest_matches {
                    Some(true) => Cell::from(format!("= seq {}", r.digest))
                        .style(Style::default().fg(Color::Green)),
                    Some(false) => Cell::from(format!("≠ seq {}", r.digest))
                        .style(Style::default().fg(Color::Red)),
                    None => Cell::from(r.digest.clone()),
                };
                let name = if r.interrupted {
                    format!("{} (stopped)", r.strategy)
                } else if !r.ok {
                    format!("{} (errors)", r.strategy)
                } else {
                    r.strategy.clone()
                };
                Row::new(vec![
                    Cell::from(name),
                    Cell::from(format!("{:.1} s", r.wall_s)),
                    Cell::from(format!("{:.2}", r.pages_per_s)),
                    Cell::from(format!("{:.1} s", r.p99_page_s)),
                    Cell::from(bytes(r.peak_rss_bytes)),
                    Cell::from(format!("{:.2}", r.efficiency)),
                    output,
                ])
                .style(if app.viewing == Some(i) {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                })
            })
            .collect();
    if !app.done
        && let Some(i) = app.current
        && i >= app.rows.len()
    {
        rows.push(
            Row::new(vec![Cell::from(format!("{} …", app.current_name()))])
                .style(Style::default().fg(Color::DarkGray)),
        );
    }
    for failure in &app.failures {
        rows.push(
            Row::new(vec![Cell::from(failure.clone())]).style(Style::default().fg(Color::Red)),
        );
    }
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Min(10),
        ],
    )
    .header(header)
    .block(block(" comparison ".into(), app, Panel::Comparison));
    f.render_widget(table, area);
}

fn footer(f: &mut Frame, area: Rect, app: &App) {
    let text = if app.can_exit() {
        "closing…".to_string()
    } else if app.done {
        "done: reports written · q quit · tab panel · ◂ ▸ histogram · ? help".to_string()
    } else {
        let mut t = "q stop · p pause display · tab panel · ◂ ▸ histogram · ? help".to_string();
        if let Some(m) = &app.last_message {
            t.push_str(&format!(" · {m}"));
        }
        t
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().fg(Color::DarkGray)),
        area,
    );
}

fn help(f: &mut Frame, area: Rect) {
    let w = area.width.min(72);
    let h = area.height.min(14);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let text = vec![
        Line::from("q, Esc, Ctrl-C  stop: pages in flight finish, the report is written,"),
        Line::from("                no further strategy starts, then the TUI closes"),
        Line::from("p, space        freeze the display (the run goes on unperturbed)"),
        Line::from("tab, shift-tab  move between panels"),
        Line::from("◂ ▸             page latency or a stage's service time"),
        Line::from("↑ ↓             (comparison panel) look back at a finished strategy"),
        Line::from("?               this help (any key closes it)"),
        Line::from(""),
        Line::from("Timeline: a lane per render worker and device stage; blocks are"),
        Line::from("stage calls. The TUI only reads published snapshots: every report"),
        Line::from("figure comes from the run's own collector."),
    ];
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys ")
                .border_style(Style::default().fg(Color::Cyan)),
        ),
        r,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::metrics::histogram::LatencyHistogram;
    use crate::metrics::live::{HistogramView, LiveSpan, QueueView, Snapshot, StageView};
    use crate::metrics::memory::MemorySample;
    use crate::tui::state::{ComparisonRow, UiMsg};

    /// A run in the middle of its fourth strategy, with three finished.
    fn app() -> App {
        let mut a = App::new(
            "sample",
            vec![
                "sequential".into(),
                "concurrent-render".into(),
                "staged-batch".into(),
                "streaming-microbatch".into(),
            ],
            "24 pages per strategy (--max-pages)".into(),
        );
        let row = |name: &str, wall: f64, peak_mib: u64, matches: Option<bool>| ComparisonRow {
            strategy: name.into(),
            ok: true,
            interrupted: false,
            wall_s: wall,
            pages_per_s: 24.0 / wall,
            p99_page_s: 5.2,
            peak_rss_bytes: peak_mib << 20,
            efficiency: 1.0,
            digest: "5b6b541c".into(),
            digest_matches: matches,
            report: format!("results/{name}.json"),
        };
        for (i, r) in [
            row("sequential", 40.1, 625, None),
            row("concurrent-render", 41.3, 700, Some(true)),
            row("staged-batch", 39.5, 1400, Some(false)),
        ]
        .into_iter()
        .enumerate()
        {
            a.apply(UiMsg::Started {
                index: i,
                name: r.strategy.clone(),
            });
            a.apply(UiMsg::Finished(r, Arc::default()));
        }
        a.apply(UiMsg::Started {
            index: 3,
            name: "streaming-microbatch".into(),
        });
        a.apply(UiMsg::Phase("running".into()));
        let s = |x: f64| (x * 1e9) as u64;
        let span = |lane: &str, stage: &str, a: f64, b: f64| LiveSpan {
            lane: lane.into(),
            stage: stage.into(),
            start_ns: s(a),
            end_ns: s(b),
            items: 1,
            ok: true,
        };
        let mut page = LatencyHistogram::new();
        let mut ocr = LatencyHistogram::new();
        for i in 0..10u64 {
            page.record(s(3.0) + i * s(0.2));
            ocr.record(s(1.5) + i * s(0.05));
        }
        a.on_snapshot(Arc::new(Snapshot {
            strategy: "streaming-microbatch".into(),
            elapsed_ns: s(20.0),
            pages_total: 24,
            pages_done: 10,
            pages_failed: 0,
            pages_in_flight: 2,
            spans: vec![
                span("render-thread:0", "render", 2.0, 2.1),
                span("render-thread:0", "render", 4.0, 4.1),
                span("device·layout", "layout", 2.2, 2.3),
                span("device·ocr", "ocr", 2.3, 3.9),
                span("device·ocr", "ocr", 4.0, 5.6),
            ],
            lanes: vec![
                "render-thread:0".into(),
                "device·layout".into(),
                "device·ocr".into(),
            ],
            stages: vec![StageView {
                stage: "ocr".into(),
                calls: 10,
                items: 10,
                busy_ns: s(16.0),
                service: HistogramView::of(&ocr),
                generation: None,
            }],
            page_latency: HistogramView::of(&page),
            memory: (0..40)
                .map(|i| MemorySample {
                    t_ms: i as f64 * 50.0,
                    rss_bytes: (500 + i * 4) << 20,
                    children_rss_bytes: 0,
                    system_used_bytes: 2 << 30,
                    system_available_bytes: 20 << 30,
                    swap_used_bytes: 0,
                    accelerator_used_bytes: None,
                })
                .collect(),
            system_total_bytes: 24 << 30,
            accelerator_total_bytes: None,
            queues: vec![
                QueueView {
                    stage: "layout".into(),
                    depth: 1,
                    capacity: 1,
                },
                QueueView {
                    stage: "ocr".into(),
                    depth: 0,
                    capacity: 1,
                },
            ],
            notice: None,
        }));
        a
    }

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        t.draw(|f| draw(f, app)).expect("draw");
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
                line.trim_end().to_string() + "\n"
            })
            .collect()
    }

    /// Compares with the committed snapshot; `UPDATE_SNAPSHOTS=1 cargo test` rewrites it (look
    /// at the diff before committing).
    fn assert_snapshot(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/tui/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, got).expect("write snapshot");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            got,
            want,
            "screen differs from {} (UPDATE_SNAPSHOTS=1 to accept)",
            path.display()
        );
    }

    #[test]
    fn the_whole_screen_at_80x24() {
        let s = screen(&app(), 80, 24);
        assert_snapshot("screen_80x24.txt", &s);
        for panel in ["timeline", "memory", "page latency", "comparison", "q stop"] {
            assert!(s.contains(panel), "{panel} missing:\n{s}");
        }
        assert!(s.contains("≠ seq"), "a mismatching digest is flagged:\n{s}");
        assert!(s.contains("queues layout 1/1"), "{s}");
    }

    #[test]
    fn a_larger_terminal_gets_taller_panels() {
        let s = screen(&app(), 120, 40);
        assert_snapshot("screen_120x40.txt", &s);
        assert!(s.contains("streaming-microbatch …"));
    }

    #[test]
    fn untrained_weights_are_flagged_in_the_title() {
        let mut a = app();
        assert!(!screen(&a, 80, 24).contains("UNTRAINED"));
        let mut s = (*a.snapshot).clone();
        s.notice = Some("UNTRAINED weights: layout detr-layout".into());
        a.on_snapshot(Arc::new(s));
        let first = screen(&a, 80, 24)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(first.starts_with(" pipebench  UNTRAINED "), "{first}");
    }

    #[test]
    fn help_overlays_the_screen() {
        let mut a = app();
        a.help = true;
        let s = screen(&a, 80, 24);
        assert!(s.contains("freeze the display"), "{s}");
    }
}
