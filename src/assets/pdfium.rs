//! libpdfium as a file: the pinned pypdfium2 wheels, fetching and verifying the library into
//! the cache, and finding it in a folder. Binding it is `corpus::pdfium`'s job.
//!
//! pdfium-render 0.9.5 targets the pdfium_8125 API; pypdfium2 5.15.2 ships chromium/8149,
//! which exports every symbol of that API (pdfium-render resolves all symbols at bind time, so a
//! too-old library fails at bind, never mid-run). Debian has no pdfium package, hence the wheel.

use std::path::{Path, PathBuf};

use super::{AssetError, PinnedWheel, WheelAsset};

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

/// The cached library file, fetched and verified first if the cache lacks it (never with
/// `offline`; `force` fetches again).
pub fn fetch(
    cache_root: &Path,
    offline: bool,
    force: bool,
    announce: &mut dyn FnMut(&str),
) -> Result<PathBuf, AssetError> {
    let asset = wheel_asset()?;
    let paths = asset.ensure(cache_root, offline, force, announce)?;
    Ok(paths
        .into_iter()
        .next()
        .expect("wheel_asset lists the library as its first member"))
}

/// The library file a path names: the path itself, or the library inside it if it is a folder.
pub fn library_in(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(library_file_name())
    } else {
        path.to_path_buf()
    }
}

/// The pdfium build number (e.g. "8149") from the version.json a wheel puts next to the
/// library, if there is one.
pub fn build_of(lib: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("build").map(|b| b.to_string())
}
