//! `pipebench tui`: the live terminal UI.
//!
//! It runs on a thread of its own while the strategies run on the main thread (the device
//! thread of every strategy). Each frame it takes the latest snapshot the live board published
//! ([`crate::metrics::live`]), the runner's messages ([`state::UiMsg`]) and the keys, and draws
//! at most [`MAX_FPS`] frames a second. It sends one thing back — stop — through the callback
//! it is given. It never imports the pipeline or the models, and computes nothing a report
//! depends on.

pub mod state;
pub mod terminal;
pub mod view;
pub mod widgets;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::metrics::live::LiveBoard;
use state::{Action, App, UiMsg};

/// Frames per second, at most: smooth enough for a progress display, cheap enough that the
/// TUI thread stays far below a percent of a core.
pub const MAX_FPS: u64 = 15;

/// The running TUI.
pub struct Ui {
    tx: Sender<UiMsg>,
    handle: JoinHandle<std::io::Result<App>>,
}

impl Ui {
    /// Takes the terminal and starts drawing `app`. `on_stop` is called once when the user
    /// asks to stop.
    pub fn start(
        app: App,
        board: Arc<LiveBoard>,
        on_stop: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("pipebench-tui".into())
            .spawn(move || ui_loop(app, board, rx, on_stop))?;
        Ok(Self { tx, handle })
    }

    pub fn send(&self, msg: UiMsg) {
        let _ = self.tx.send(msg);
    }

    /// Tells the TUI the run is over and waits until the user closes it; the terminal is
    /// restored when this returns.
    pub fn finish(self) -> std::io::Result<App> {
        let _ = self.tx.send(UiMsg::AllDone);
        drop(self.tx);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the TUI thread panicked")))
    }
}

fn ui_loop(
    mut app: App,
    board: Arc<LiveBoard>,
    rx: Receiver<UiMsg>,
    on_stop: Box<dyn Fn() + Send>,
) -> std::io::Result<App> {
    let _guard = terminal::TerminalGuard::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let frame = Duration::from_millis(1000 / MAX_FPS);
    // Fault injection for the test that the terminal survives a panic.
    let panic_for_test = std::env::var_os("PIPEBENCH_TEST_TUI_PANIC").is_some();
    loop {
        loop {
            match rx.try_recv() {
                Ok(m) => app.apply(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !app.done {
                        app.apply(UiMsg::AllDone);
                    }
                    break;
                }
            }
        }
        if app.can_exit() {
            break;
        }
        app.on_snapshot(board.latest());
        app.last_message = crate::console::last_held();
        term.draw(|f| view::draw(f, &app))?;
        if panic_for_test {
            panic!("PIPEBENCH_TEST_TUI_PANIC is set: the TUI panics after its first frame");
        }
        // Keys until the next frame is due: they change the state at once and show in the
        // next frame, so a held key cannot push the frame rate up.
        let next = Instant::now() + frame;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            if let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
                && app.on_key(k) == Action::Stop
            {
                on_stop();
            }
        }
    }
    Ok(app)
}
