//! The TUI's state: plain data, changed only by messages from the runner, snapshots from the
//! live board and keys. Nothing here measures anything.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::metrics::live::Snapshot;

/// The panels, in `tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Timeline,
    Memory,
    Latency,
    Comparison,
}

impl Panel {
    const ORDER: [Panel; 4] = [
        Panel::Timeline,
        Panel::Memory,
        Panel::Latency,
        Panel::Comparison,
    ];

    fn next(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    fn previous(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + Self::ORDER.len() - 1) % Self::ORDER.len()]
    }
}

/// A finished strategy, for the comparison table (figures from its report).
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    pub strategy: String,
    pub ok: bool,
    pub interrupted: bool,
    pub wall_s: f64,
    pub pages_per_s: f64,
    pub p99_page_s: f64,
    pub peak_rss_bytes: u64,
    pub efficiency: f64,
    /// The output digest's first characters.
    pub digest: String,
    /// Equal to sequential's digest (None: no sequential run to compare with, or this is it).
    pub digest_matches: Option<bool>,
    pub report: String,
}

/// What the runner tells the TUI.
#[derive(Debug, Clone, PartialEq)]
pub enum UiMsg {
    /// Strategy `index` (0-based) starts.
    Started { index: usize, name: String },
    /// What the current strategy is doing (loading models, running, writing the report).
    Phase(String),
    /// A strategy finished; its report is written. With its last snapshot, to look back at.
    Finished(ComparisonRow, Arc<Snapshot>),
    /// A strategy could not run.
    Failed { name: String, error: String },
    /// No more strategies will run.
    AllDone,
}

/// What a key asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// Stop the run (finish the pages in flight, write the report, run nothing more).
    Stop,
}

#[derive(Debug, Clone)]
pub struct App {
    pub corpus: String,
    pub strategies: Vec<String>,
    /// The page budget, said on screen.
    pub budget: String,
    pub current: Option<usize>,
    pub phase: String,
    pub snapshot: Arc<Snapshot>,
    pub rows: Vec<ComparisonRow>,
    /// Each finished strategy's last snapshot (same order as `rows`).
    pub finals: Vec<Arc<Snapshot>>,
    /// A finished strategy shown instead of the live run (↑ ↓ in the comparison panel).
    pub viewing: Option<usize>,
    pub failures: Vec<String>,
    pub focus: Panel,
    /// The display is frozen (the run goes on).
    pub paused: bool,
    pub help: bool,
    /// Index into the latency panel's choices: 0 is page latency, then each stage.
    pub histogram: usize,
    /// `q` was pressed: stopping.
    pub stopping: bool,
    /// The runner is done (every strategy ran, or the run was stopped).
    pub done: bool,
    /// The last message the run printed (held back while the TUI owns the terminal).
    pub last_message: Option<String>,
}

impl App {
    pub fn new(corpus: &str, strategies: Vec<String>, budget: String) -> Self {
        Self {
            corpus: corpus.to_string(),
            strategies,
            budget,
            current: None,
            phase: "starting".into(),
            snapshot: Arc::default(),
            rows: Vec::new(),
            finals: Vec::new(),
            viewing: None,
            failures: Vec::new(),
            focus: Panel::Timeline,
            paused: false,
            help: false,
            histogram: 0,
            stopping: false,
            done: false,
            last_message: None,
        }
    }

    pub fn apply(&mut self, msg: UiMsg) {
        match msg {
            UiMsg::Started { index, .. } => {
                self.current = Some(index);
                self.phase = "starting".into();
            }
            UiMsg::Phase(p) => self.phase = p,
            UiMsg::Finished(row, last) => {
                self.rows.push(row);
                self.finals.push(last);
                self.phase = "finished".into();
            }
            UiMsg::Failed { name, error } => self.failures.push(format!("{name}: {error}")),
            UiMsg::AllDone => {
                self.done = true;
                self.phase = if self.stopping {
                    "stopped".into()
                } else {
                    "all strategies done".into()
                };
            }
        }
    }

    /// A new snapshot from the live board, unless the display is frozen.
    pub fn on_snapshot(&mut self, s: Arc<Snapshot>) {
        if !self.paused {
            self.snapshot = s;
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if self.help && !ctrl_c && key.code != KeyCode::Char('q') {
            self.help = false;
            return Action::None;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return self.stop(),
            _ if ctrl_c => return self.stop(),
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.previous(),
            // In the comparison panel, ↑ ↓ choose what the other panels show: a finished
            // strategy's last state, or (past either end) the live run.
            KeyCode::Up | KeyCode::Down if self.focus == Panel::Comparison => {
                let n = self.finals.len();
                if n > 0 {
                    // Positions 0..n are the finished strategies, n is live.
                    let at = self.viewing.unwrap_or(n);
                    let next = if key.code == KeyCode::Up {
                        (at + n) % (n + 1)
                    } else {
                        (at + 1) % (n + 1)
                    };
                    self.viewing = (next < n).then_some(next);
                }
            }
            KeyCode::Right | KeyCode::Char('l') => {
                self.histogram = (self.histogram + 1) % self.histogram_choices().len()
            }
            KeyCode::Left => {
                let n = self.histogram_choices().len();
                self.histogram = (self.histogram + n - 1) % n;
            }
            _ => {}
        }
        Action::None
    }

    fn stop(&mut self) -> Action {
        if self.stopping {
            return Action::None;
        }
        self.stopping = true;
        if !self.done {
            self.phase = "stopping: finishing the pages in flight, writing the report".into();
        }
        Action::Stop
    }

    /// The TUI may close: `q` was pressed and the runner has finished writing.
    pub fn can_exit(&self) -> bool {
        self.stopping && self.done
    }

    /// The latency panel's choices: page latency, then each stage's service time.
    pub fn histogram_choices(&self) -> Vec<String> {
        let mut v = vec!["page latency".to_string()];
        v.extend(
            self.shown()
                .stages
                .iter()
                .map(|s| format!("{} service", s.stage)),
        );
        v
    }

    /// What the panels show: the viewed finished strategy's last snapshot, or the live one.
    pub fn shown(&self) -> &Arc<Snapshot> {
        self.viewing
            .and_then(|i| self.finals.get(i))
            .unwrap_or(&self.snapshot)
    }

    pub fn current_name(&self) -> &str {
        self.current
            .and_then(|i| self.strategies.get(i))
            .map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn app() -> App {
        App::new(
            "smoke",
            vec!["sequential".into(), "streaming".into()],
            "all pages".into(),
        )
    }

    #[test]
    fn messages_move_the_run_along() {
        let mut a = app();
        a.apply(UiMsg::Started {
            index: 1,
            name: "streaming".into(),
        });
        assert_eq!(a.current_name(), "streaming");
        a.apply(UiMsg::Phase("running".into()));
        assert_eq!(a.phase, "running");
        a.apply(UiMsg::AllDone);
        assert!(a.done && !a.can_exit());
        assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::Stop);
        assert!(a.can_exit());
    }

    #[test]
    fn stopping_waits_for_the_runner() {
        let mut a = app();
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(a.on_key(ctrl_c), Action::Stop);
        assert!(a.phase.starts_with("stopping"));
        assert!(!a.can_exit(), "the report is not written yet");
        assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::None, "once");
        a.apply(UiMsg::AllDone);
        assert!(a.can_exit());
        assert_eq!(a.phase, "stopped");
    }

    #[test]
    fn pause_freezes_the_snapshot_and_keys_move_focus() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('p')));
        a.on_snapshot(Arc::new(Snapshot {
            pages_done: 3,
            ..Snapshot::default()
        }));
        assert_eq!(a.snapshot.pages_done, 0, "paused");
        a.on_key(key(KeyCode::Char('p')));
        a.on_snapshot(Arc::new(Snapshot {
            pages_done: 4,
            ..Snapshot::default()
        }));
        assert_eq!(a.snapshot.pages_done, 4);
        assert_eq!(a.focus, Panel::Timeline);
        a.on_key(key(KeyCode::Tab));
        a.on_key(key(KeyCode::Tab));
        assert_eq!(a.focus, Panel::Latency);
        a.on_key(key(KeyCode::BackTab));
        assert_eq!(a.focus, Panel::Memory);
        // Help: any key closes it; it does not act.
        a.on_key(key(KeyCode::Char('?')));
        assert!(a.help);
        a.on_key(key(KeyCode::Tab));
        assert!(!a.help);
        assert_eq!(a.focus, Panel::Memory);
    }

    #[test]
    fn finished_strategies_can_be_looked_back_at() {
        let mut a = app();
        let done = |pages| {
            Arc::new(Snapshot {
                pages_done: pages,
                ..Snapshot::default()
            })
        };
        let row = ComparisonRow {
            strategy: "sequential".into(),
            ok: true,
            interrupted: false,
            wall_s: 1.0,
            pages_per_s: 9.0,
            p99_page_s: 0.1,
            peak_rss_bytes: 1,
            efficiency: 1.0,
            digest: "d".into(),
            digest_matches: None,
            report: "r".into(),
        };
        a.apply(UiMsg::Finished(row.clone(), done(9)));
        a.apply(UiMsg::Finished(row, done(7)));
        a.on_snapshot(done(3));
        assert_eq!(a.shown().pages_done, 3, "live by default");
        a.on_key(key(KeyCode::Down));
        assert_eq!(
            a.shown().pages_done,
            3,
            "↓ acts in the comparison panel only"
        );
        a.focus = Panel::Comparison;
        a.on_key(key(KeyCode::Up));
        assert_eq!((a.viewing, a.shown().pages_done), (Some(1), 7));
        a.on_key(key(KeyCode::Up));
        assert_eq!(a.shown().pages_done, 9);
        a.on_key(key(KeyCode::Up));
        assert_eq!((a.viewing, a.shown().pages_done), (None, 3), "back to live");
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.viewing, Some(0));
    }
}
