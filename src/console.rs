//! Messages for the user on stderr — or, while the TUI owns the terminal, held back (stderr
//! output would tear its screen) and printed once the terminal is restored.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static HELD: AtomicBool = AtomicBool::new(false);
static BACKLOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints `line` to stderr, or keeps it for later while messages are held.
pub fn message(line: String) {
    if HELD.load(Ordering::Relaxed)
        && let Ok(mut b) = BACKLOG.lock()
    {
        b.push(line);
        return;
    }
    eprintln!("{line}");
}

/// A message from pipebench to the user (`pipebench: ` and `msg`), through [`message`].
pub fn say(msg: &str) {
    message(format!("pipebench: {msg}"));
}

/// Holds messages back from now on (the TUI takes the terminal).
pub fn hold() {
    HELD.store(true, Ordering::Relaxed);
}

/// Stops holding messages and returns those held, in order.
pub fn release() -> Vec<String> {
    HELD.store(false, Ordering::Relaxed);
    BACKLOG
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default()
}

/// The last message held, if any (the TUI shows it).
pub fn last_held() -> Option<String> {
    BACKLOG.lock().ok().and_then(|b| b.last().cloned())
}
