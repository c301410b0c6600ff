//! Shared test helpers: the built binary, libpdfium (fetched once through `pipebench setup`),
//! the test corpora.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pipebench"))
}

pub fn smoke() -> PathBuf {
    root().join("corpora/smoke")
}

pub fn bad_dir() -> PathBuf {
    root().join("tests/fixtures/bad")
}

/// The libpdfium the tests use: `pipebench setup` puts it in the user cache once (pip fetch of
/// the pinned wheel); later calls find it there.
pub fn pdfium_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let out = std::process::Command::new(exe())
            .args(["setup", "--models", "none"])
            .output()
            .expect("running pipebench setup");
        assert!(
            out.status.success(),
            "pipebench setup failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix("libpdfium ready: "))
            .expect("setup prints the library path");
        PathBuf::from(path)
    })
}

/// Binds libpdfium in this test process.
pub fn bind_in_process() {
    pipebench::corpus::pdfium::bind_library(Some(pdfium_lib())).expect("binding libpdfium");
}

/// A `pipebench` command bound to the test library, with the cache untouched.
pub fn cmd() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(exe());
    c.env("PDFIUM_DYNAMIC_LIB_PATH", pdfium_lib());
    c
}

/// Largest absolute elementwise difference of two tensors of the same shape (parity tests).
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// A tensor of token ids (any integer or float dtype) as rows of u32 (parity tests).
pub fn ids(t: &candle_core::Tensor) -> Vec<Vec<u32>> {
    t.to_dtype(candle_core::DType::U32)
        .and_then(|t| t.to_vec2::<u32>())
        .expect("ids")
}

/// A PNG (RGB on disk, e.g. written by cv2.imwrite from a BGR array) as tightly packed BGR, the
/// renderer's pixel order: (width, height, pixels).
pub fn read_bgr_png(path: PathBuf) -> (usize, usize, Vec<u8>) {
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = img.into_raw();
    for px in data.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    (w, h, data)
}
