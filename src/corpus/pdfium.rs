//! The process-global libpdfium binding: the one place that binds it, and the record of what
//! was bound (for reports).
//!
//! Binding order: `--pdfium-lib` (authoritative: if it fails we stop), then
//! `PDFIUM_DYNAMIC_LIB_PATH`, then the cache (fetched on first use unless offline), then the
//! system library. A total failure lists every attempt and the one command that fixes it.
//! Finding, fetching and verifying the library file is `assets::pdfium`'s job.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pdfium_render::prelude::{Pdfium, PdfiumError};

use crate::assets;
use crate::assets::pdfium::{PYPDFIUM2_VERSION, build_of, library_file_name, library_in};

static PDFIUM: OnceLock<Pdfium> = OnceLock::new();
static BOUND: OnceLock<PdfiumInfo> = OnceLock::new();

/// Where libpdfium comes from (the CLI's `--pdfium-lib`, `--cache-dir`, `--offline`).
#[derive(Debug, Clone, Default)]
pub struct PdfiumOptions {
    /// A library file, or a folder holding it: takes precedence over everything else.
    pub library: Option<PathBuf>,
    /// Cache folder (see `assets::cache_root`).
    pub cache_dir: Option<PathBuf>,
    /// Never fetch: fail when the cache lacks the library.
    pub offline: bool,
}

/// Where the bound library came from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
pub struct PdfiumInfo {
    /// Path of the library file, or the platform name for the system library.
    pub library: String,
    /// `--pdfium-lib`, `PDFIUM_DYNAMIC_LIB_PATH`, `cache` or `system`.
    pub source: String,
    /// pdfium build number (e.g. "8149") when a version.json sits next to the library.
    pub build: Option<String>,
}

/// Why libpdfium could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("could not bind libpdfium from --pdfium-lib {path}: {reason}\n  fix: point --pdfium-lib at a libpdfium ({lib}) or its folder, or drop the flag to use the cache (`pipebench setup`)", lib = library_file_name())]
    Explicit { path: PathBuf, reason: String },
    #[error("could not bind libpdfium. Tried, in order:\n{}\n  fix: run `pipebench setup` (fetches pypdfium2=={PYPDFIUM2_VERSION} with pip), or pass --pdfium-lib /path/to/{lib}", tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"), lib = library_file_name())]
    Exhausted { tried: Vec<String> },
}

/// Binds libpdfium once for this process: a file, or the system library (`None`). Records
/// nothing for reports: [`bind`] does, and is what commands call.
pub fn bind_library(file: Option<&Path>) -> Result<(), PdfiumError> {
    if PDFIUM.get().is_some() {
        return Ok(());
    }
    let bindings = match file {
        Some(f) => Pdfium::bind_to_library(f)?,
        None => Pdfium::bind_to_system_library()?,
    };
    let _ = PDFIUM.set(Pdfium::new(bindings));
    Ok(())
}

/// How the library was bound by [`bind`], if it was.
pub fn bound_info() -> Option<PdfiumInfo> {
    BOUND.get().cloned()
}

/// The bound library, for the renderer.
pub(super) fn bound() -> Option<&'static Pdfium> {
    PDFIUM.get()
}

/// Binds libpdfium following the binding order; idempotent within a process.
pub fn bind(
    options: &PdfiumOptions,
    announce: &mut dyn FnMut(&str),
) -> Result<PdfiumInfo, BindError> {
    if let Some(info) = bound_info() {
        return Ok(info);
    }
    let try_file = |file: &Path, source: &str| -> Result<PdfiumInfo, String> {
        if !file.is_file() {
            return Err(format!("{} does not exist", file.display()));
        }
        bind_library(Some(file)).map_err(|e| e.to_string())?;
        Ok(PdfiumInfo {
            library: file.display().to_string(),
            source: source.to_string(),
            build: build_of(file),
        })
    };
    let finish = |info: PdfiumInfo| {
        let _ = BOUND.set(info.clone());
        info
    };

    if let Some(p) = &options.library {
        let file = library_in(p);
        return try_file(&file, "--pdfium-lib")
            .map(finish)
            .map_err(|reason| BindError::Explicit {
                path: p.clone(),
                reason,
            });
    }
    let mut tried = vec!["--pdfium-lib: not given".to_string()];
    match std::env::var_os("PDFIUM_DYNAMIC_LIB_PATH").filter(|v| !v.is_empty()) {
        Some(v) => {
            let file = library_in(Path::new(&v));
            match try_file(&file, "PDFIUM_DYNAMIC_LIB_PATH") {
                Ok(info) => return Ok(finish(info)),
                Err(e) => {
                    announce(&format!(
                        "warning: PDFIUM_DYNAMIC_LIB_PATH={}: {e}; trying the cache",
                        file.display()
                    ));
                    tried.push(format!("PDFIUM_DYNAMIC_LIB_PATH={}: {e}", file.display()));
                }
            }
        }
        None => tried.push("PDFIUM_DYNAMIC_LIB_PATH: not set".to_string()),
    }
    let root = assets::cache_root(options.cache_dir.as_deref());
    match assets::pdfium::fetch(&root, options.offline, false, announce) {
        Ok(file) => match try_file(&file, "cache") {
            Ok(info) => return Ok(finish(info)),
            Err(e) => tried.push(format!("cache {}: {e}", file.display())),
        },
        Err(e) => tried.push(format!("cache {}: {e}", root.display())),
    }
    match bind_library(None) {
        Ok(()) => Ok(finish(PdfiumInfo {
            library: system_library_name(),
            source: "system".into(),
            build: None,
        })),
        Err(e) => {
            tried.push(format!("system library {}: {e}", system_library_name()));
            Err(BindError::Exhausted { tried })
        }
    }
}

fn system_library_name() -> String {
    Pdfium::pdfium_platform_library_name()
        .to_string_lossy()
        .into_owned()
}

/// `pipebench setup`: fetch (or re-verify) the cached library and bind it once as a check.
pub fn setup(
    options: &PdfiumOptions,
    force: bool,
    announce: &mut dyn FnMut(&str),
) -> anyhow::Result<PathBuf> {
    let root = assets::cache_root(options.cache_dir.as_deref());
    let file = assets::pdfium::fetch(&root, options.offline, force, announce)?;
    bind_library(Some(&file))
        .map_err(|e| anyhow::anyhow!("fetched {} but it does not bind: {e}", file.display()))?;
    Ok(file)
}
