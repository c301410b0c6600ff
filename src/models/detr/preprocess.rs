//! transformers' `DetrImageProcessor`, for DETR and Table Transformer inputs: the resize rule,
//! PIL's antialiased bilinear resampling on 8-bit pixels, rescale by 1/255, ImageNet mean/std,
//! and bottom/right zero padding to the batch's largest image with each image's valid size
//! (the pixel mask).
//!
//! Resize rules:
//! - [`Resize::ShortestLongest`] — DETR's `{"shortest_edge": 800, "longest_edge": 1333}`:
//!   `get_size_with_aspect_ratio` (the short side becomes `shortest` unless the long side would
//!   pass `longest`; the other side is truncated, not rounded);
//! - [`Resize::Longest`] — Table Transformer's `MaxResize` (its inference code, and v1.1's
//!   `{"longest_edge": N}`): the long side becomes N, the other `round(side · N / long)`.

use candle_core::{Device, Result, Tensor};

use crate::models::ocr::preprocess::Bgr;

/// How an image is sized for the model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Resize {
    ShortestLongest { shortest: usize, longest: usize },
    Longest { longest: usize },
}

impl Resize {
    /// Output (height, width) for an image of `h` × `w`.
    pub fn size(&self, h: usize, w: usize) -> (usize, usize) {
        match *self {
            Resize::ShortestLongest { shortest, longest } => {
                size_with_aspect_ratio(h, w, shortest, Some(longest))
            }
            Resize::Longest { longest } => {
                let scale = longest as f64 / h.max(w) as f64;
                let r = |n: usize| ((n as f64 * scale).round() as usize).max(1);
                (r(h), r(w))
            }
        }
    }
}

/// transformers' `get_size_with_aspect_ratio` (with its float→int truncations).
pub fn size_with_aspect_ratio(
    h: usize,
    w: usize,
    size: usize,
    max_size: Option<usize>,
) -> (usize, usize) {
    let mut size = size as f64;
    let mut raw: Option<f64> = None;
    if let Some(max) = max_size {
        let (lo, hi) = (h.min(w) as f64, h.max(w) as f64);
        if hi / lo * size > max as f64 {
            let r = max as f64 * lo / hi;
            raw = Some(r);
            size = r.round();
        }
    }
    let s = size as usize;
    if (h <= w && h == s) || (w <= h && w == s) {
        (h, w)
    } else if w < h {
        let oh = match raw {
            Some(r) => (r * h as f64 / w as f64) as usize,
            None => (size * h as f64 / w as f64) as usize,
        };
        (oh, s)
    } else {
        let ow = match raw {
            Some(r) => (r * w as f64 / h as f64) as usize,
            None => (size * w as f64 / h as f64) as usize,
        };
        (s, ow)
    }
}

/// PIL's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's source window and fixed-point weights (PIL's `precompute_coeffs` with
/// the bilinear (triangle) filter, then `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle filter's support is 1
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                for v in &mut k {
                    *v /= total;
                }
            }
            let fixed = k
                .iter()
                .map(|v| {
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if s < 0.0 {
                        (s - 0.5) as i32
                    } else {
                        (s + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples an interleaved 3-channel 8-bit image (`width`×`height`, rows `stride` bytes apart)
/// to `ow`×`oh` exactly as PIL's `Image.resize(..., BILINEAR)` does: a horizontal pass into an
/// 8-bit image, then a vertical one; a pass whose size does not change is skipped.
pub fn resize_bilinear_pil(
    data: &[u8],
    width: usize,
    height: usize,
    stride: usize,
    ow: usize,
    oh: usize,
) -> Vec<u8> {
    let half: i64 = 1 << (PRECISION_BITS - 1);
    // Horizontal pass.
    let horizontal: Vec<u8> = if ow != width {
        let coeffs = coefficients(width, ow);
        let mut out = vec![0u8; height * ow * 3];
        for y in 0..height {
            let row = &data[y * stride..y * stride + width * 3];
            let orow = &mut out[y * ow * 3..(y + 1) * ow * 3];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut ss = half;
                    for (i, kv) in k.iter().enumerate() {
                        ss += row[(xmin + i) * 3 + c] as i64 * *kv as i64;
                    }
                    orow[xx * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        (0..height)
            .flat_map(|y| data[y * stride..y * stride + width * 3].iter().copied())
            .collect()
    };
    if oh == height {
        return horizontal;
    }
    // Vertical pass.
    let coeffs = coefficients(height, oh);
    let rw = ow * 3;
    let mut out = vec![0u8; oh * rw];
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        let orow = &mut out[yy * rw..(yy + 1) * rw];
        for (x, o) in orow.iter_mut().enumerate() {
            let mut ss = half;
            for (i, kv) in k.iter().enumerate() {
                ss += horizontal[(ymin + i) * rw + x] as i64 * *kv as i64;
            }
            *o = clip8(ss);
        }
    }
    out
}

/// Normalization constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// A batch ready for [`super::Detr::forward`].
pub struct DetrBatch {
    /// [B, 3, H, W], zero beyond each image's valid size.
    pub pixels: Tensor,
    /// Each image's valid (h, w) in `pixels`.
    pub sizes: Vec<(usize, usize)>,
}

/// One image in the model's size and channel order: RGB planes, normalized (CHW, f32).
pub fn prepare(img: &Bgr<'_>, resize: Resize, norm: Normalize) -> (Vec<f32>, (usize, usize)) {
    let (oh, ow) = resize.size(img.height, img.width);
    // The page is BGR, PIL sees RGB: resampling is per channel, so the swap happens while
    // normalizing.
    let resized = resize_bilinear_pil(img.data, img.width, img.height, img.stride, ow, oh);
    let plane = oh * ow;
    let mut out = vec![0f32; 3 * plane];
    // Planes in RGB order from BGR pixels.
    for (c, src) in [2usize, 1, 0].iter().enumerate() {
        let (m, s) = (norm.mean[c], norm.std[c]);
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (i, px) in resized.chunks_exact(3).enumerate() {
            dst[i] = (px[*src] as f32 * (1.0 / 255.0) - m) / s;
        }
    }
    (out, (oh, ow))
}

/// Pads prepared images (CHW, each with its size) into one batch.
pub fn batch(images: &[(Vec<f32>, (usize, usize))], device: &Device) -> Result<DetrBatch> {
    let hmax = images.iter().map(|(_, (h, _))| *h).max().unwrap_or(1);
    let wmax = images.iter().map(|(_, (_, w))| *w).max().unwrap_or(1);
    let plane = hmax * wmax;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (b, (img, (h, w))) in images.iter().enumerate() {
        for c in 0..3 {
            for y in 0..*h {
                let src = &img[(c * h + y) * w..(c * h + y + 1) * w];
                let off = (b * 3 + c) * plane + y * wmax;
                data[off..off + w].copy_from_slice(src);
            }
        }
    }
    Ok(DetrBatch {
        pixels: Tensor::from_vec(data, (images.len(), 3, hmax, wmax), device)?,
        sizes: images.iter().map(|(_, s)| *s).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_longest_rule_matches_transformers() {
        // A 150-dpi letter page (1275 × 1650): short side 800 → long 1035.
        assert_eq!(
            size_with_aspect_ratio(1650, 1275, 800, Some(1333)),
            (1035, 800)
        );
        // Very long page: the long side caps at 1333.
        assert_eq!(
            size_with_aspect_ratio(3000, 1000, 800, Some(1333)),
            (1333, 444)
        );
        // Already at size.
        assert_eq!(
            size_with_aspect_ratio(800, 1200, 800, Some(1333)),
            (800, 1200)
        );
        assert_eq!(
            Resize::Longest { longest: 1000 }.size(118, 559),
            (211, 1000)
        );
    }

    #[test]
    fn pil_bilinear_keeps_constant_images_and_identity_sizes() {
        let (w, h) = (7, 5);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        assert_eq!(resize_bilinear_pil(&data, w, h, w * 3, w, h), data);
        let flat = vec![200u8; w * h * 3];
        let out = resize_bilinear_pil(&flat, w, h, w * 3, 3, 9);
        assert!(out.iter().all(|v| *v == 200), "{out:?}");
    }

    #[test]
    fn padding_keeps_each_image_top_left() {
        let a = (vec![1f32; 3 * 2 * 3], (2, 3));
        let b = (vec![2f32; 3 * 4], (4, 1));
        let batch = batch(&[a, b], &Device::Cpu).expect("batch");
        assert_eq!(batch.pixels.dims(), &[2, 3, 4, 3]);
        assert_eq!(batch.sizes, vec![(2, 3), (4, 1)]);
        let p = batch
            .pixels
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("v");
        // Image 0, channel 0: rows 0–1 are ones, rows 2–3 zero.
        assert_eq!(&p[0..12], &[1., 1., 1., 1., 1., 1., 0., 0., 0., 0., 0., 0.]);
        // Image 1, channel 0: first column twos.
        assert_eq!(
            &p[36..48],
            &[2., 0., 0., 2., 0., 0., 2., 0., 0., 2., 0., 0.]
        );
    }
}
