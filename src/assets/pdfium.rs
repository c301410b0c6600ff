//! libpdfium: pinned pypdfium2 wheels and the binding order.
//!
//! pdfium-render 0.9.5 targets the pdfium_8125 API; pypdfium2 5.15.2 ships chromium/8149,
//! which exports every symbol of that API (pdfium-render resolves all symbols at bind time, so a
//! too-old library fails at bind, never mid-run). Debian has no pdfium package, hence the wheel.
//!
//! Binding order: `--pdfium-lib` (authoritative: if it fails we stop), then
//! `PDFIUM_DYNAMIC_LIB_PATH`, then the cache (fetched on first use unless `--offline`), then the
//! system library. A total failure lists every attempt and the one command that fixes it.

use std::path::{Path, PathBuf};

use super::{AssetError, PinnedWheel, WheelAsset, cache_root};
use crate::cli::PdfiumArgs;

/// The pypdfium2 release whose libpdfium we bind.
pub const PYPDFIUM2_VERSION: &str = "5.15.2";

/// One wheel per supported platform: (os, arch, platform tag, wheel file, sha256), taken with
/// `pip download --no-deps --only-binary=:all: --platform TAG pypdfium2==5.15.2`.
pub const PYPDFIUM2_WHEELS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "linux",
        "x86_64",
        "manylinux_2_17_x86_64",
        "pypdfium2-5.15.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "dc31aea5b0fb9fefc9b537a65f4113980b2c40798445736a7e6565bc85161e37",
    ),
    (
        "linux",
        "aarch64",
        "manylinux_2_17_aarch64",
        "pypdfium2-5.15.2-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "dd46e93c0c3a73f6cea8489baff6d77a5d0759dd53fbbce0aeb49c91830176fc",
    ),
    (
        "macos",
        "aarch64",
        "macosx_13_0_arm64",
        "pypdfium2-5.15.2-py3-none-macosx_13_0_arm64.whl",
        "e71fe832e94421ac3c28d6a6ed4a9e61f22417089652d339f391c4ffc2a44c35",
    ),
    (
        "macos",
        "x86_64",
        "macosx_13_0_x86_64",
        "pypdfium2-5.15.2-py3-none-macosx_13_0_x86_64.whl",
        "7f296a298074d76fb7c3d1ecb80d7097a96778bf0ad9c5c48a0170e56e2c6821",
    ),
];

/// The library's file name on this platform.
pub fn library_file_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libpdfium.dylib"
    } else {
        "libpdfium.so"
    }
}

/// The pinned wheel asset for this platform.
pub fn wheel_asset() -> Result<WheelAsset, AssetError> {
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    let (_, _, tag, file, sha) = PYPDFIUM2_WHEELS
        .iter()
        .find(|(o, a, ..)| *o == os && *a == arch)
        .ok_or(AssetError::UnsupportedPlatform {
            what: "libpdfium".into(),
            os,
            arch,
        })?;
    let wheel = PinnedWheel {
        package: "pypdfium2".into(),
        version: PYPDFIUM2_VERSION.into(),
        platform_tag: Some(tag.to_string()),
        file_name: file.to_string(),
        sha256: sha.to_string(),
    };
    let lib = library_file_name();
    let member: &'static str = if cfg!(target_os = "macos") {
        "pypdfium2_raw/libpdfium.dylib"
    } else {
        "pypdfium2_raw/libpdfium.so"
    };
    Ok(WheelAsset {
        what: "libpdfium".into(),
        cache_subdir: format!("pdfium/pypdfium2-{PYPDFIUM2_VERSION}-{os}-{arch}"),
        wheel,
        members: vec![
            (member.into(), lib.into()),
            ("pypdfium2_raw/version.json".into(), "version.json".into()),
        ],
    })
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

/// A resolved library candidate (file path + where it came from).
fn candidate_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(library_file_name())
    } else {
        path.to_path_buf()
    }
}

fn build_of(lib: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("build").map(|b| b.to_string())
}

/// Binds libpdfium following the binding order; idempotent within a process.
pub fn bind(args: &PdfiumArgs, announce: &mut dyn FnMut(&str)) -> Result<PdfiumInfo, BindError> {
    if let Some(info) = crate::corpus::render::bound_info() {
        return Ok(info);
    }
    let try_file = |file: &Path, source: &str| -> Result<PdfiumInfo, String> {
        if !file.is_file() {
            return Err(format!("{} does not exist", file.display()));
        }
        crate::corpus::render::bind_library(Some(file)).map_err(|e| e.to_string())?;
        Ok(PdfiumInfo {
            library: file.display().to_string(),
            source: source.to_string(),
            build: build_of(file),
        })
    };
    let finish = |info: PdfiumInfo| {
        crate::corpus::render::set_bound_info(info.clone());
        info
    };

    if let Some(p) = &args.pdfium_lib {
        let file = candidate_file(p);
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
            let file = candidate_file(Path::new(&v));
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
    let root = cache_root(args.cache_dir.as_deref());
    match wheel_asset().and_then(|asset| asset.ensure(&root, args.offline, false, announce)) {
        Ok(paths) => match try_file(&paths[0], "cache") {
            Ok(info) => return Ok(finish(info)),
            Err(e) => tried.push(format!("cache {}: {e}", paths[0].display())),
        },
        Err(e) => tried.push(format!("cache {}: {e}", root.display())),
    }
    match crate::corpus::render::bind_library(None) {
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
    pdfium_render::prelude::Pdfium::pdfium_platform_library_name()
        .to_string_lossy()
        .into_owned()
}

/// `pipebench setup`: fetch (or re-verify) the cached library and bind it once as a check.
pub fn setup(args: &PdfiumArgs, force: bool) -> anyhow::Result<PathBuf> {
    let root = cache_root(args.cache_dir.as_deref());
    let asset = wheel_asset()?;
    let mut say = |m: &str| eprintln!("pipebench: {m}");
    let paths = asset.ensure(&root, args.offline, force, &mut say)?;
    crate::corpus::render::bind_library(Some(&paths[0]))
        .map_err(|e| anyhow::anyhow!("fetched {} but it does not bind: {e}", paths[0].display()))?;
    Ok(paths[0].clone())
}
