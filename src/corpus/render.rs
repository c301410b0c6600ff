//! In-process rendering with pdfium (bound by `corpus::pdfium`).
//!
//! pdfium is not thread-safe and pdfium-render 0.9 serializes every call behind one global
//! mutex, so threads give no parallelism: in-process rendering belongs to one thread (the
//! [`Renderer`] is owned by whoever renders), and real parallelism comes from the process pool
//! in `render_pool.rs`, where each worker process binds its own libpdfium.
//!
//! Pages are rendered straight into a caller-owned buffer as 24-bit BGR (pdfium's native byte
//! order; PaddleOCR-family models take BGR too), rows padded to a multiple of 4 bytes as pdfium
//! requires. No RGBA round trip, no `image::DynamicImage` copy.

use std::path::{Path, PathBuf};

use pdfium_render::prelude::*;

use crate::vocab::FailureKind;

fn pdfium() -> Result<&'static Pdfium, RenderError> {
    super::pdfium::bound().ok_or(RenderError::NotBound)
}

/// Pixel layout of a rendered page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PixelFormat {
    /// 3 bytes per pixel, blue first; rows `stride` bytes apart.
    Bgr8,
}

/// A rendered page.
#[derive(Clone)]
pub struct PageImage {
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next (≥ 3 × width, a multiple of 4).
    pub stride: u32,
    pub format: PixelFormat,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for PageImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PageImage({}x{} {:?}, {} bytes)",
            self.width,
            self.height,
            self.format,
            self.data.len()
        )
    }
}

impl PageImage {
    /// Bytes needed for a BGR page of this size (pdfium's stride rule: rows padded to 4 bytes).
    pub fn bgr_stride(width: u32) -> u32 {
        (width * 3).div_ceil(4) * 4
    }

    /// Sets the row padding bytes (past 3 × width) to zero: pdfium leaves them untouched, so a
    /// reused buffer would otherwise carry the previous page's bytes there.
    pub fn zero_padding(&mut self) {
        let used = self.width as usize * 3;
        let stride = self.stride as usize;
        if stride > used {
            for row in self.data.chunks_exact_mut(stride) {
                row[used..].fill(0);
            }
        }
    }
}

/// Render resolution: a DPI, optionally capped by the longer side in pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenderSpec {
    pub dpi: f32,
    /// If set, pages whose longer side would exceed this many pixels are scaled down to it.
    pub max_long_side_px: Option<u32>,
}

impl Default for RenderSpec {
    fn default() -> Self {
        Self {
            dpi: 150.0,
            max_long_side_px: None,
        }
    }
}

impl RenderSpec {
    /// Output pixel size for a page of `w_pt` × `h_pt` points (1/72 inch).
    pub fn pixel_size(&self, w_pt: f32, h_pt: f32) -> (u32, u32) {
        let mut scale = self.dpi / 72.0;
        if let Some(max) = self.max_long_side_px {
            let long = w_pt.max(h_pt) * scale;
            if long > max as f32 {
                scale *= max as f32 / long;
            }
        }
        let px = |v: f32| ((v * scale).round() as u32).max(1);
        (px(w_pt), px(h_pt))
    }
}

/// What can go wrong opening or rendering a document.
#[derive(Debug, Clone, thiserror::Error, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RenderError {
    #[error("libpdfium is not bound (internal error: bind before rendering)")]
    NotBound,
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("empty file (0 bytes); remove it from the corpus")]
    EmptyFile,
    #[error("not a PDF (no %PDF header); remove it from the corpus or pass only PDFs")]
    NotPdf,
    #[error(
        "corrupt or truncated PDF: pdfium could not parse it; re-download it, or try repairing it with `qpdf in.pdf out.pdf`"
    )]
    Corrupt,
    #[error(
        "encrypted PDF: a password is required to open it; decrypt it first, e.g. `qpdf --decrypt --password=PASSWORD in.pdf out.pdf`"
    )]
    Encrypted,
    #[error("PDF security settings forbid opening it")]
    Security,
    #[error("the document has no pages")]
    NoPages,
    #[error("page {page} does not exist (the document has {pages})")]
    NoSuchPage { page: u32, pages: u32 },
    #[error("page {page} could not be loaded: {reason}")]
    Page { page: u32, reason: String },
    #[error("page {page} is too large to render at this resolution ({width}x{height} px)")]
    TooLarge { page: u32, width: u32, height: u32 },
    #[error("render worker failed: {0}")]
    Worker(String),
}

impl RenderError {
    /// A short machine-readable kind for reports.
    pub fn kind(&self) -> FailureKind {
        match self {
            RenderError::NotBound => FailureKind::NotBound,
            RenderError::Unreadable(_) => FailureKind::Unreadable,
            RenderError::EmptyFile => FailureKind::EmptyFile,
            RenderError::NotPdf => FailureKind::NotPdf,
            RenderError::Corrupt => FailureKind::Corrupt,
            RenderError::Encrypted => FailureKind::Encrypted,
            RenderError::Security => FailureKind::Security,
            RenderError::NoPages => FailureKind::NoPages,
            RenderError::NoSuchPage { .. } => FailureKind::NoSuchPage,
            RenderError::Page { .. } => FailureKind::Page,
            RenderError::TooLarge { .. } => FailureKind::TooLarge,
            RenderError::Worker(_) => FailureKind::Worker,
        }
    }
}

/// Largest page buffer we agree to allocate (1 GiB): beyond this a typo in dpi is likelier than
/// a real need, and the error says which page and size.
const MAX_PAGE_BYTES: u64 = 1 << 30;

fn open_error(path: &Path, e: PdfiumError) -> RenderError {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
            RenderError::Encrypted
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => {
            RenderError::Security
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FileError) => {
            RenderError::Unreadable(format!("pdfium could not read {}", path.display()))
        }
        _ => {
            if has_pdf_header(path) {
                RenderError::Corrupt
            } else {
                RenderError::NotPdf
            }
        }
    }
}

/// True if the first KiB holds `%PDF-` (pdfium, like Acrobat, tolerates leading junk).
fn has_pdf_header(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 1024];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].windows(5).any(|w| w == b"%PDF-")
}

/// An open document (borrowing the process-global pdfium).
pub struct OpenDocument {
    pub path: PathBuf,
    doc: PdfDocument<'static>,
}

impl OpenDocument {
    pub fn open(path: &Path) -> Result<Self, RenderError> {
        let meta = std::fs::metadata(path).map_err(|e| RenderError::Unreadable(e.to_string()))?;
        if meta.len() == 0 {
            return Err(RenderError::EmptyFile);
        }
        let doc = pdfium()?
            .load_pdf_from_file(path, None)
            .map_err(|e| open_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            doc,
        })
    }

    pub fn page_count(&self) -> u32 {
        self.doc.pages().len() as u32
    }

    fn load_page(&self, page: u32) -> Result<PdfPage<'_>, RenderError> {
        let pages = self.page_count();
        if page >= pages {
            return Err(RenderError::NoSuchPage { page, pages });
        }
        self.doc
            .pages()
            .get(page as PdfPageIndex)
            .map_err(|e| RenderError::Page {
                page,
                reason: format!("{e:?}"),
            })
    }

    /// Renders page `page` (0-based), loading it once: into `shared` when it is large enough,
    /// else into `fallback` (resized). Returns (width, height, stride, rendered into shared).
    pub fn render_to(
        &self,
        page: u32,
        spec: &RenderSpec,
        shared: Option<&mut [u8]>,
        fallback: &mut Vec<u8>,
    ) -> Result<(u32, u32, u32, bool), RenderError> {
        let p = self.load_page(page)?;
        let (w, h) = spec.pixel_size(p.width().value, p.height().value);
        let stride = PageImage::bgr_stride(w);
        let bytes = stride as u64 * h as u64;
        if bytes > MAX_PAGE_BYTES {
            return Err(RenderError::TooLarge {
                page,
                width: w,
                height: h,
            });
        }
        match shared {
            Some(buf) if buf.len() as u64 >= bytes => {
                render_page_into(&p, page, w, h, &mut buf[..bytes as usize])?;
                Ok((w, h, stride, true))
            }
            _ => {
                fallback.resize(bytes as usize, 0);
                render_page_into(&p, page, w, h, fallback)?;
                Ok((w, h, stride, false))
            }
        }
    }

    pub fn render(&self, page: u32, spec: &RenderSpec) -> Result<PageImage, RenderError> {
        let mut data = Vec::new();
        let (width, height, stride, _) = self.render_to(page, spec, None, &mut data)?;
        Ok(PageImage {
            width,
            height,
            stride,
            format: PixelFormat::Bgr8,
            data,
        })
    }
}

/// A character of a page's text layer, with its box in rendered-page pixels (top-left
/// origin).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextChar {
    pub ch: char,
    /// [x0, y0, x1, y1]
    pub bbox: [f32; 4],
}

impl OpenDocument {
    /// The page's visible text layer in pdfium's order, boxes scaled as `spec` renders the
    /// page. Skips characters pdfium generates (spaces and line breaks it infers), whitespace,
    /// and invisible text (render mode 3: hidden OCR layers of scanned PDFs are not ground
    /// truth).
    pub fn text_layer(&self, page: u32, spec: &RenderSpec) -> Result<Vec<TextChar>, RenderError> {
        let p = self.load_page(page)?;
        let (w_pt, h_pt) = (p.width().value, p.height().value);
        let (w, h) = spec.pixel_size(w_pt, h_pt);
        let (sx, sy) = (w as f32 / w_pt, h as f32 / h_pt);
        let text = p.text().map_err(|e| RenderError::Page {
            page,
            reason: format!("text layer: {e:?}"),
        })?;
        let mut out = Vec::new();
        for c in text.chars().iter() {
            let Some(ch) = c.unicode_char() else { continue };
            if ch.is_whitespace() || c.is_generated().unwrap_or(false) {
                continue;
            }
            if matches!(c.render_mode(), Ok(PdfPageTextRenderMode::Invisible)) {
                continue;
            }
            let Ok(r) = c.loose_bounds() else { continue };
            out.push(TextChar {
                ch,
                bbox: [
                    r.left().value * sx,
                    (h_pt - r.top().value) * sy,
                    r.right().value * sx,
                    (h_pt - r.bottom().value) * sy,
                ],
            });
        }
        Ok(out)
    }
}

/// Renders a loaded page at exactly `w`×`h` into `buf` (which must hold `bgr_stride(w) * h`).
pub(crate) fn render_page_into(
    p: &PdfPage<'_>,
    page: u32,
    w: u32,
    h: u32,
    buf: &mut [u8],
) -> Result<(), RenderError> {
    let page_err = |e: PdfiumError| RenderError::Page {
        page,
        reason: format!("{e:?}"),
    };
    let mut bitmap = PdfBitmap::from_bytes(w as Pixels, h as Pixels, PdfBitmapFormat::BGR, buf)
        .map_err(page_err)?;
    let config = PdfRenderConfig::new()
        .set_fixed_size(w as Pixels, h as Pixels)
        .set_format(PdfBitmapFormat::BGR)
        // Keep pdfium's native BGR order: models normalize per channel anyway.
        .set_reverse_byte_order(false);
    p.render_into_bitmap_with_config(&mut bitmap, &config)
        .map_err(page_err)
}

/// A renderer that keeps the most recently used document open (pages are requested in corpus
/// order, so one open document is the common case).
#[derive(Default)]
pub struct Renderer {
    current: Option<OpenDocument>,
}

impl Renderer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn document(&mut self, path: &Path) -> Result<&OpenDocument, RenderError> {
        if self.current.as_ref().is_none_or(|d| d.path != path) {
            self.current = None;
            self.current = Some(OpenDocument::open(path)?);
        }
        Ok(self.current.as_ref().expect("set just above"))
    }

    pub fn render(
        &mut self,
        path: &Path,
        page: u32,
        spec: &RenderSpec,
    ) -> Result<PageImage, RenderError> {
        self.document(path)?.render(page, spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_size_follows_dpi() {
        let s = RenderSpec {
            dpi: 150.0,
            max_long_side_px: None,
        };
        assert_eq!(s.pixel_size(612.0, 792.0), (1275, 1650));
        let s = RenderSpec {
            dpi: 72.0,
            max_long_side_px: None,
        };
        assert_eq!(s.pixel_size(612.0, 792.0), (612, 792));
    }

    #[test]
    fn long_side_cap_scales_down_only() {
        let s = RenderSpec {
            dpi: 150.0,
            max_long_side_px: Some(1000),
        };
        assert_eq!(s.pixel_size(612.0, 792.0), (773, 1000));
        let s = RenderSpec {
            dpi: 72.0,
            max_long_side_px: Some(1000),
        };
        assert_eq!(s.pixel_size(612.0, 792.0), (612, 792));
    }

    #[test]
    fn stride_is_padded_to_four_bytes() {
        assert_eq!(PageImage::bgr_stride(1), 4);
        assert_eq!(PageImage::bgr_stride(4), 12);
        assert_eq!(PageImage::bgr_stride(1275), 3828);
    }
}
