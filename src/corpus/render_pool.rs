//! A pool of render worker processes: real parallel rendering despite pdfium's global lock.
//!
//! Each worker is pipebench itself, re-invoked as `pipebench __render-worker`, binding the same
//! libpdfium the parent bound. Requests go as JSON lines on the worker's stdin; the worker
//! renders straight into a shared-memory file (a tmpfs file under /dev/shm where it exists,
//! else the temp dir, mapped by both sides and unlinked as soon as the worker has mapped it)
//! and answers with a JSON line. The parent copies the pixels out once (one memcpy). Pages too
//! large for the shared buffer travel inline on the pipe after the answer line.
//!
//! Pipes alone were the simpler design; shared memory was chosen because a 150-dpi Letter page
//! is 6.3 MB and two pipe copies per page cost a noticeable share of a ~7 ms render on 2 cores.
//!
//! A worker that dies (pdfium crashing on a hostile file) fails only the page it was rendering;
//! the next request respawns it.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use memmap2::MmapMut;

use super::render::{OpenDocument, PageImage, PixelFormat, RenderError, RenderSpec};

/// Shared buffer per worker: 64 MiB holds an A3 page at 300 dpi (≈ 52 MB). tmpfs pages are
/// allocated on first touch, so an unused tail costs nothing.
const SHM_BYTES: u64 = 64 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    path: PathBuf,
    page: u32,
    spec: RenderSpec,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Reply {
    /// Rendered; `inline` pixels follow on the pipe, else they are in the shared buffer.
    Ok {
        width: u32,
        height: u32,
        stride: u32,
        len: u64,
        inline: bool,
        render_ns: u64,
    },
    Err(RenderError),
}

/// A rendered page from a worker, with the worker's own render time.
#[derive(Debug)]
pub struct WorkerPage {
    pub image: PageImage,
    /// Time inside the worker (open + render), excluding transfer.
    pub render_ns: u64,
}

/// The parent's handle on one worker process.
pub struct RenderWorker {
    index: usize,
    exe: PathBuf,
    library: PathBuf,
    proc: Option<Live>,
}

struct Live {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    shm: Option<MmapMut>,
}

fn shm_dir() -> PathBuf {
    let dev_shm = Path::new("/dev/shm");
    if dev_shm.is_dir() {
        dev_shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl RenderWorker {
    /// Starts worker `index` bound to `library`, running this same executable.
    pub fn spawn(index: usize, library: &Path) -> Result<Self, RenderError> {
        let exe = std::env::current_exe()
            .map_err(|e| RenderError::Worker(format!("locating pipebench: {e}")))?;
        Self::spawn_exe(&exe, index, library)
    }

    /// Starts worker `index` running the pipebench executable `exe` (tests pass the built
    /// binary, since their own executable is the test harness).
    pub fn spawn_exe(exe: &Path, index: usize, library: &Path) -> Result<Self, RenderError> {
        let mut w = Self {
            index,
            exe: exe.to_path_buf(),
            library: library.to_path_buf(),
            proc: None,
        };
        w.start()?;
        Ok(w)
    }

    /// The worker's process id (for memory sampling), if it is alive.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    fn start(&mut self) -> Result<(), RenderError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            RenderError::Worker(format!("render worker {}: {what}: {e}", self.index))
        };
        let shm_path = shm_dir().join(format!(
            "pipebench-render-{}-{}-{}",
            std::process::id(),
            self.index,
            nanos_now()
        ));
        let shm = (|| -> std::io::Result<MmapMut> {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&shm_path)?;
            f.set_len(SHM_BYTES)?;
            // SAFETY: the file is private to this parent and its one worker; the parent only
            // reads the region the worker reports as written, after the worker's reply.
            unsafe { MmapMut::map_mut(&f) }
        })();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("__render-worker")
            .arg("--pdfium-lib")
            .arg(&self.library);
        if shm.is_ok() {
            cmd.arg("--shm").arg(&shm_path);
        }
        let spawned = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&shm_path);
                return Err(fail("spawning", &e));
            }
        };
        let stdin = child.stdin.take().expect("stdin was piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
        // The worker says "ready" once bound and mapped; then the name can go.
        let mut line = String::new();
        let ready = stdout.read_line(&mut line);
        let _ = std::fs::remove_file(&shm_path);
        match ready {
            Ok(n) if n > 0 && line.trim() == "ready" => {}
            Ok(_) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(fail("did not start", &format!("{} {status}", line.trim())));
            }
            Err(e) => return Err(fail("did not start", &e)),
        }
        self.proc = Some(Live {
            child,
            stdin,
            stdout,
            shm: shm.ok(),
        });
        Ok(())
    }

    /// Renders one page. A dead worker is restarted first; a worker that dies during this
    /// request fails this page only.
    pub fn render(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<WorkerPage, RenderError> {
        if self.proc.is_none() {
            self.start()?;
        }
        let result = self.exchange(path, page, spec);
        if let Err(RenderError::Worker(_)) = &result
            && let Some(mut live) = self.proc.take()
        {
            let _ = live.child.kill();
            let status = live
                .child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            return Err(RenderError::Worker(format!(
                "render worker {} (pid {}) died rendering {} page {}: {status}",
                self.index,
                live.child.id(),
                path.display(),
                page + 1
            )));
        }
        result
    }

    fn exchange(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<WorkerPage, RenderError> {
        let live = self.proc.as_mut().expect("started above");
        let io = |e: std::io::Error| RenderError::Worker(e.to_string());
        let mut req = serde_json::to_vec(&Request {
            path: path.to_path_buf(),
            page,
            spec: *spec,
        })
        .map_err(|e| RenderError::Worker(e.to_string()))?;
        req.push(b'\n');
        live.stdin.write_all(&req).map_err(io)?;
        live.stdin.flush().map_err(io)?;
        let mut line = String::new();
        if live.stdout.read_line(&mut line).map_err(io)? == 0 {
            return Err(RenderError::Worker("unexpected end of output".into()));
        }
        let reply: Reply = serde_json::from_str(&line)
            .map_err(|e| RenderError::Worker(format!("bad reply {line:?}: {e}")))?;
        match reply {
            Reply::Err(e) => Err(e),
            Reply::Ok {
                width,
                height,
                stride,
                len,
                inline,
                render_ns,
            } => {
                let data = if inline {
                    let mut data = vec![0u8; len as usize];
                    live.stdout.read_exact(&mut data).map_err(io)?;
                    data
                } else {
                    let shm = live.shm.as_ref().ok_or_else(|| {
                        RenderError::Worker("reply used shared memory, but none is mapped".into())
                    })?;
                    if len > shm.len() as u64 {
                        return Err(RenderError::Worker(
                            "reply larger than the shared buffer".into(),
                        ));
                    }
                    // One pass: no zero-fill before the copy.
                    shm[..len as usize].to_vec()
                };
                let mut image = PageImage {
                    width,
                    height,
                    stride,
                    format: PixelFormat::Bgr8,
                    data,
                };
                image.zero_padding();
                Ok(WorkerPage { image, render_ns })
            }
        }
    }
}

impl Drop for RenderWorker {
    fn drop(&mut self) {
        if let Some(mut live) = self.proc.take() {
            // Closing stdin ends the worker's loop; wait briefly, then make sure.
            drop(live.stdin);
            let deadline = Instant::now() + std::time::Duration::from_millis(500);
            loop {
                match live.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    _ => {
                        let _ = live.child.kill();
                        let _ = live.child.wait();
                        break;
                    }
                }
            }
        }
    }
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The worker process: bind `pdfium_lib`, map `shm` (the shared buffer, if the parent gave
/// one), say "ready", then serve requests until stdin closes.
pub fn worker_main(pdfium_lib: &Path, shm: Option<&Path>) -> anyhow::Result<()> {
    super::pdfium::bind_library(Some(pdfium_lib))
        .map_err(|e| anyhow::anyhow!("render worker: binding {}: {e}", pdfium_lib.display()))?;
    let mut shm = match shm {
        Some(p) => {
            let f = OpenOptions::new().read(true).write(true).open(p)?;
            // SAFETY: see the parent side; only this process writes, only between request and reply.
            Some(unsafe { MmapMut::map_mut(&f)? })
        }
        None => None,
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(out, "ready")?;
    out.flush()?;
    let mut current: Option<OpenDocument> = None;
    let mut fallback = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let req: Request = serde_json::from_str(&line)?;
        let t0 = Instant::now();
        let rendered = (|| {
            if current.as_ref().is_none_or(|d| d.path != req.path) {
                current = None;
                current = Some(OpenDocument::open(&req.path)?);
            }
            let doc = current.as_ref().expect("opened above");
            let (w, h, stride, shared) =
                doc.render_to(req.page, &req.spec, shm.as_deref_mut(), &mut fallback)?;
            let len = stride as u64 * h as u64;
            Ok((w, h, stride, len, !shared))
        })();
        let render_ns = t0.elapsed().as_nanos() as u64;
        let reply = match rendered {
            Ok((width, height, stride, len, inline)) => Reply::Ok {
                width,
                height,
                stride,
                len,
                inline,
                render_ns,
            },
            Err(e) => Reply::Err(e),
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        if let Reply::Ok { inline: true, .. } = reply {
            out.write_all(&fallback)?;
        }
        out.flush()?;
    }
}
