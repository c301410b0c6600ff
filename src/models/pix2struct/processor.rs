//! DePlot's image processor (transformers' `Pix2StructImageProcessor`, its default
//! torchvision class), step for step:
//!
//! 1. **Header** (DePlot is a "VQA" checkpoint: its question is drawn above the chart):
//!    the header image and the chart are scaled to a common width — the wider of the two —
//!    keeping their aspects (heights truncated to whole pixels), with Pillow's bicubic, and
//!    stacked on white ([`render_header`]). transformers draws the header at run time with a
//!    font it downloads; offline we ship the header drawn once, [`HEADER_PNG`]
//!    (`models/deplot-header.png`, made by `scripts/pix2struct_fixtures.py` with transformers'
//!    own `render_text` — size 36, wrapped at 80 characters, 5 px padding, black on white — and
//!    Liberation Sans, which has Arial's metrics; SIL Open Font License).
//! 2. **Standardization** of the whole image in f32: `(x − mean) / max(std, 1/√N)`, the
//!    standard deviation unbiased (torch's `std`), over all N = 3·h·w values of 0–255.
//! 3. **Resize** so that `rows · cols ≤ max_patches` patches of 16×16 fit with the aspect kept
//!    (`scale = √(max_patches · 16/h · 16/w)`, rows = ⌊scale·h/16⌋, cols = ⌊scale·w/16⌋), with
//!    torch's antialiased bilinear interpolation in f32 ([`resize_bilinear_aa`]: written out;
//!    no crate resamples float planes with torch's kernel and its normalization at the edges).
//! 4. **Patches**: row-major, each flattened (row, column, channel) and prefixed by its row and
//!    column id from 1; zero rows pad to `max_patches` ([`flattened_patches`]).
//!
//! Tested against the reference in `tests/pix2struct.rs` (fixtures by
//! `scripts/pix2struct_fixtures.py`).

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

use crate::models::got_ocr2::processor::resize_bicubic_pillow;

/// DePlot's question, drawn above every chart.
pub const HEADER_TEXT: &str = "Generate underlying data table of the figure below:";

/// [`HEADER_TEXT`] drawn as transformers draws it (see the module doc).
pub const HEADER_PNG: &[u8] = include_bytes!("../../../models/deplot-header.png");

/// Pixels per patch side (DePlot's; a checkpoint's is √(patch_embed_hidden_size / 3)).
pub const PATCH: usize = 16;

/// The shipped header image.
pub fn header_image() -> std::result::Result<RgbImage, String> {
    image::load_from_memory(HEADER_PNG)
        .map(|i| i.to_rgb8())
        .map_err(|e| format!("models/deplot-header.png: {e}"))
}

/// `chart` with `header` above it, both scaled to the wider one's width (transformers'
/// `render_header`).
pub fn render_header(chart: &RgbImage, header: &RgbImage) -> RgbImage {
    let (w, h) = (chart.width() as usize, chart.height() as usize);
    let (hw, hh) = (header.width() as usize, header.height() as usize);
    let width = w.max(hw);
    // Python's int(h * (width / w)): the ratio first, in double precision, then truncation.
    let height = (h as f64 * (width as f64 / w as f64)) as usize;
    let header_height = (hh as f64 * (width as f64 / hw as f64)) as usize;
    let mut out = RgbImage::from_pixel(
        width as u32,
        (height + header_height) as u32,
        image::Rgb([255, 255, 255]),
    );
    let head = resize_bicubic_pillow(header, width, header_height);
    let body = resize_bicubic_pillow(chart, width, height);
    image::imageops::replace(&mut out, &head, 0, 0);
    image::imageops::replace(&mut out, &body, 0, header_height as i64);
    out
}

/// `img` as CHW f32, standardized per image (see the module doc).
pub fn standardize(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h * 3;
    let mut chw = vec![0f32; n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * w * h + i] = f32::from(p[c]);
        }
    }
    let mean = chw.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
    let var = chw
        .iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / (n.max(2) - 1) as f64;
    let std = (var.sqrt() as f32).max(1.0 / (n as f32).sqrt());
    let mean = mean as f32;
    chw.iter_mut().for_each(|v| *v = (*v - mean) / std);
    chw
}

/// One axis of torch's antialiased bilinear resize: per output index, the first source index
/// and the normalized weights (in f32, as torch computes them for float images).
fn aa_weights(inp: usize, out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = inp as f32 / out as f32;
    let (support, inv) = if scale >= 1.0 {
        (scale, 1.0 / scale)
    } else {
        (1.0, 1.0)
    };
    (0..out)
        .map(|i| {
            let center = scale * (i as f32 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(inp as i64) as usize;
            let mut w: Vec<f32> = (xmin..xmax)
                .map(|j| {
                    let x = ((j as f32 - center + 0.5) * inv).abs();
                    if x < 1.0 { 1.0 - x } else { 0.0 }
                })
                .collect();
            let total: f32 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, w)
        })
        .collect()
}

/// CHW f32 planes of `h`×`w` resized to `oh`×`ow` as `torch.nn.functional.interpolate(...,
/// mode="bilinear", antialias=True, align_corners=False)` does: separable, width first.
pub fn resize_bilinear_aa(
    chw: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let mut data = chw.to_vec();
    let mut cw = w;
    if ow != w {
        let ws = aa_weights(w, ow);
        let mut out = vec![0f32; channels * h * ow];
        for c in 0..channels {
            for y in 0..h {
                let row = &data[(c * h + y) * w..(c * h + y + 1) * w];
                for (x, (start, wk)) in ws.iter().enumerate() {
                    let mut t = 0f32;
                    for (k, v) in wk.iter().enumerate() {
                        t += v * row[start + k];
                    }
                    out[(c * h + y) * ow + x] = t;
                }
            }
        }
        data = out;
        cw = ow;
    }
    if oh != h {
        let ws = aa_weights(h, oh);
        let mut out = vec![0f32; channels * oh * cw];
        for c in 0..channels {
            for (y, (start, wk)) in ws.iter().enumerate() {
                for x in 0..cw {
                    let mut t = 0f32;
                    for (k, v) in wk.iter().enumerate() {
                        t += v * data[(c * h + start + k) * cw + x];
                    }
                    out[(c * oh + y) * cw + x] = t;
                }
            }
        }
        data = out;
    }
    data
}

/// The patch grid an `h`×`w` image gets under `max_patches` patches of `patch`²: (rows, cols).
pub fn grid(h: usize, w: usize, max_patches: usize, patch: usize) -> (usize, usize) {
    let p = patch as f64;
    let scale = (max_patches as f64 * (p / h as f64) * (p / w as f64)).sqrt();
    let rows = ((scale * h as f64 / p) as usize).clamp(1, max_patches);
    let cols = ((scale * w as f64 / p) as usize).clamp(1, max_patches);
    (rows, cols)
}

/// The processed image: `max_patches` rows of `2 + 3·patch²` values, and the rows in use.
pub struct Patches {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub max_patches: usize,
    /// Values per row.
    pub depth: usize,
}

impl Patches {
    /// (1, max_patches, depth).
    pub fn tensor(&self, device: &Device) -> Result<Tensor> {
        Tensor::from_slice(&self.data, (1, self.max_patches, self.depth), device)
    }
}

/// Standardized CHW planes of `h`×`w` resized and cut into at most `max_patches` patches of
/// `patch`².
pub fn flattened_patches(
    chw: &[f32],
    (h, w): (usize, usize),
    max_patches: usize,
    patch: usize,
) -> Patches {
    let (rows, cols) = grid(h, w, max_patches, patch);
    let (rh, rw) = (rows * patch, cols * patch);
    let img = resize_bilinear_aa(chw, 3, (h, w), (rh, rw));
    let depth = 2 + 3 * patch * patch;
    let mut data = vec![0f32; max_patches * depth];
    for r in 0..rows {
        for c in 0..cols {
            let row = &mut data[(r * cols + c) * depth..(r * cols + c + 1) * depth];
            row[0] = (r + 1) as f32;
            row[1] = (c + 1) as f32;
            let mut i = 2;
            for py in 0..patch {
                for px in 0..patch {
                    for ch in 0..3 {
                        row[i] = img[(ch * rh + r * patch + py) * rw + c * patch + px];
                        i += 1;
                    }
                }
            }
        }
    }
    Patches {
        data,
        rows,
        cols,
        max_patches,
        depth,
    }
}

/// The whole processor: `chart` (with `header` drawn above it, when given) → patches of
/// `patch`².
pub fn preprocess(
    chart: &RgbImage,
    header: Option<&RgbImage>,
    max_patches: usize,
    patch: usize,
) -> Patches {
    let img = match header {
        Some(hd) => render_header(chart, hd),
        None => chart.clone(),
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    flattened_patches(&standardize(&img), (h, w), max_patches, patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_keeps_the_aspect_under_the_budget() {
        // A 2:1 chart at 2048 patches: 32 × 64.
        assert_eq!(grid(500, 1000, 2048, PATCH), (32, 64));
        for (h, w) in [(37, 50), (900, 120), (16, 16), (3000, 40)] {
            let (r, c) = grid(h, w, 2048, PATCH);
            assert!(r * c <= 2048 && r >= 1 && c >= 1, "{h}×{w}: {r}×{c}");
        }
    }

    #[test]
    fn the_shipped_header_loads() {
        let h = header_image().expect("header");
        assert!(
            h.width() > h.height() && h.height() > 20,
            "{:?}",
            h.dimensions()
        );
    }

    #[test]
    fn an_aa_resize_of_a_constant_is_that_constant() {
        let chw = vec![0.25f32; 3 * 37 * 50];
        for (oh, ow) in [(16, 32), (80, 96)] {
            let out = resize_bilinear_aa(&chw, 3, (37, 50), (oh, ow));
            assert_eq!(out.len(), 3 * oh * ow);
            assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
        }
    }
}
