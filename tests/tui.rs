//! `pipebench tui` in a real terminal: tmux runs it in a detached 80×24 session, `send-keys`
//! presses keys and `capture-pane` reads the screen. tmux is required (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A tmux session running one shell command; killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Self {
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "80",
                "-y",
                "24",
                command,
            ])
            .status()
            .expect("tmux is required for this test (apt-get install tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        Self { name: name.into() }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// True while the pane shows the alternate screen (a full-screen program owns it).
    fn alternate_screen(&self) -> bool {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.name, "#{alternate_on}"])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .expect("send-keys");
    }

    /// Waits until the screen contains `text`; the screen, or a panic with the last one.
    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "`{text}` did not appear within {timeout:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The shell command: the TUI, then its exit code, then a pause so the pane stays readable.
fn tui_command(out_dir: &Path, extra: &str) -> String {
    format!(
        "PDFIUM_DYNAMIC_LIB_PATH='{}' '{}' tui '{}' --out-dir '{}' {extra}; echo EXIT=$?; sleep 60",
        pdfium_lib().display(),
        exe().display(),
        smoke().display(),
        out_dir.display(),
    )
}

fn reports(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
        .collect()
}

#[test]
fn panels_appear_q_quits_cleanly_and_the_reports_are_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strategies = format!(
        "-s '{}' -s '{}'",
        root().join("tests/fixtures/strategies/null.toml").display(),
        root()
            .join("tests/fixtures/strategies/streaming-null.toml")
            .display()
    );
    let t = Tmux::start(
        &format!("pipebench-tui-{}", std::process::id()),
        &tui_command(dir.path(), &strategies),
    );
    let screen = t.wait_for("reports written", Duration::from_secs(60));
    assert!(
        t.alternate_screen(),
        "the TUI draws on the alternate screen"
    );
    for panel in [
        "timeline",
        "memory",
        "page latency",
        "comparison",
        "device·ocr",
    ] {
        assert!(screen.contains(panel), "{panel} missing:\n{screen}");
    }
    // Both strategies in the comparison, the second's output equal to the first's.
    assert!(screen.contains("sequential-null"), "{screen}");
    assert!(screen.contains("= seq"), "{screen}");
    t.keys("?");
    t.wait_for("freeze the display", Duration::from_secs(5));
    t.keys("Escape");
    t.keys("q");
    let after = t.wait_for("EXIT=", Duration::from_secs(10));
    assert!(after.contains("EXIT=0"), "{after}");
    assert!(!t.alternate_screen(), "the terminal is restored");
    // The terminal is restored (the alternate screen is gone): the comparison printed after
    // the TUI is on the normal screen.
    assert!(after.contains("streaming-null"), "{after}");
    let r = reports(dir.path());
    assert_eq!(r.len(), 2, "two reports");
    assert!(
        r.iter()
            .all(|r| r["ok"] == true && r["summary"]["pages_ok"] == 9)
    );
}

#[test]
fn ctrl_c_stops_the_run_and_keeps_its_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strategy = dir.path().join("slow.toml");
    std::fs::write(
        &strategy,
        "name = \"slow\"\nkind = \"sequential\"\n[stages.ocr]\nmodel = \"null\"\nsleep_ms = 400\n",
    )
    .expect("write");
    let out = dir.path().join("out");
    let t = Tmux::start(
        &format!("pipebench-tui-stop-{}", std::process::id()),
        &tui_command(
            &out,
            &format!("-s '{}' -s '{}'", strategy.display(), strategy.display()),
        ),
    );
    t.wait_for("device·ocr", Duration::from_secs(30));
    t.keys("C-c");
    let after = t.wait_for("EXIT=", Duration::from_secs(20));
    assert!(
        after.contains("EXIT=2"),
        "stopped early is not a success:\n{after}"
    );
    let r = reports(&out);
    assert_eq!(r.len(), 1, "the second strategy never started");
    assert_eq!(r[0]["interrupted"], true);
    let done = r[0]["summary"]["pages_ok"].as_u64().expect("pages_ok");
    assert!((1..9).contains(&done), "{done} pages");
}

#[test]
fn a_panic_gives_the_terminal_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Tmux::start(
        &format!("pipebench-tui-panic-{}", std::process::id()),
        &format!(
            "PIPEBENCH_TEST_TUI_PANIC=1 {}",
            tui_command(
                dir.path(),
                &format!(
                    "-s '{}'",
                    root().join("tests/fixtures/strategies/null.toml").display()
                )
            )
        ),
    );
    let after = t.wait_for("EXIT=", Duration::from_secs(30));
    assert!(after.contains("EXIT=2"), "{after}");
    assert!(
        after.contains("the TUI panics"),
        "the panic message is readable:\n{after}"
    );
    assert!(!t.alternate_screen(), "the terminal is restored");
    // The run itself went on: its report is written.
    assert_eq!(reports(dir.path()).len(), 1);
}
