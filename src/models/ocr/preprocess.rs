//! Preprocessing for PP-OCR detection and recognition, reproducing PaddleOCR's (OpenCV-based)
//! pipeline exactly so that model inputs are bit-identical to the reference.
//!
//! - Resizing is OpenCV's `INTER_LINEAR` on u8 with its fixed-point arithmetic: 11-bit weights
//!   from half-pixel centres computed in f32, a horizontal pass in integers, and the vertical
//!   pass of OpenCV's SIMD path (`((S0>>4)·b0 >> 16) + ((S1>>4)·b1 >> 16)`, then
//!   `(v + 2) >> 2`). Textbook rounding differs by one grey level on 2–4 % of pixels, which is
//!   enough to move recognition logits by more than the parity tolerance.
//! - Normalization is done in f32 in the array's own channel order: PaddleOCR normalizes the
//!   BGR array with ImageNet's RGB-order constants, and we do the same.

/// An 8-bit, 3-channel image (BGR as pdfium renders it), rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct Bgr<'a> {
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub data: &'a [u8],
}

impl<'a> Bgr<'a> {
    /// The sub-image `[x0, y0, x1, y1)` (a view, no copy); the box must lie inside.
    pub fn crop(&self, [x0, y0, x1, y1]: [usize; 4]) -> Bgr<'a> {
        Bgr {
            width: x1 - x0,
            height: y1 - y0,
            stride: self.stride,
            data: &self.data[y0 * self.stride + x0 * 3..],
        }
    }
}

/// OpenCV's source offsets and 11-bit weights for one axis.
fn linear_tables(dst: usize, src: usize) -> Vec<(usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                f = 0.0;
            }
            let a0 = ((1.0f32 - f) * 2048.0).round_ties_even() as i32;
            let a1 = (f * 2048.0).round_ties_even() as i32;
            (s as usize, a0, a1)
        })
        .collect()
}

/// `cv2.resize(img, (dw, dh), interpolation=INTER_LINEAR)` for 3-channel u8; returns tightly
/// packed rows (stride 3·dw).
pub fn resize_linear(img: &Bgr<'_>, dw: usize, dh: usize) -> Vec<u8> {
    let (sw, sh) = (img.width, img.height);
    let xt = linear_tables(dw, sw);
    let yt = linear_tables(dh, sh);
    // Horizontal pass for every source row that is used.
    let mut hor = vec![0i32; sh * dw * 3];
    let mut used = vec![false; sh];
    for &(s, _, _) in &yt {
        used[s] = true;
        used[(s + 1).min(sh - 1)] = true;
    }
    for y in (0..sh).filter(|y| used[*y]) {
        let row = &img.data[y * img.stride..y * img.stride + sw * 3];
        let out = &mut hor[y * dw * 3..(y + 1) * dw * 3];
        for (x, &(s, a0, a1)) in xt.iter().enumerate() {
            let s1 = (s + 1).min(sw - 1);
            for c in 0..3 {
                out[x * 3 + c] = a0 * row[s * 3 + c] as i32 + a1 * row[s1 * 3 + c] as i32;
            }
        }
    }
    let mut out = vec![0u8; dh * dw * 3];
    for (y, &(s, b0, b1)) in yt.iter().enumerate() {
        let s1 = (s + 1).min(sh - 1);
        let r0 = &hor[s * dw * 3..(s + 1) * dw * 3];
        let r1 = &hor[s1 * dw * 3..(s1 + 1) * dw * 3];
        for (i, o) in out[y * dw * 3..(y + 1) * dw * 3].iter_mut().enumerate() {
            let v = (((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16);
            *o = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// Writes `(x * scale_255 - mean[c]) / std[c]` of a 3-channel HWC image into a CHW buffer whose
/// rows are `out_w` wide (columns past the image are left as they are, zero for padding).
pub fn normalize_into(
    img: &Bgr<'_>,
    mean: [f32; 3],
    std: [f32; 3],
    divide: bool,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
) {
    normalize_channels_into(img, [0, 1, 2], mean, std, divide, out, out_w, out_h);
}

/// [`normalize_into`] with output plane `c` read from input channel `order[c]`: `[2, 1, 0]`
/// feeds a BGR image to a model that expects RGB (RapidLayout converts before normalizing).
#[allow(clippy::too_many_arguments)]
pub fn normalize_channels_into(
    img: &Bgr<'_>,
    order: [usize; 3],
    mean: [f32; 3],
    std: [f32; 3],
    divide: bool,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
) {
    for c in 0..3 {
        let src = order[c];
        let plane = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for y in 0..img.height.min(out_h) {
            let row = &img.data[y * img.stride..];
            let o = &mut plane[y * out_w..y * out_w + img.width.min(out_w)];
            for (x, v) in o.iter_mut().enumerate() {
                let p = row[x * 3 + src] as f32;
                // PaddleOCR's det multiplies by f32(1/255); its rec divides by 255.
                let p = if divide {
                    p / 255.0
                } else {
                    p * (1.0f32 / 255.0)
                };
                *v = (p - mean[c]) / std[c];
            }
        }
    }
}

/// One recognition batch row: resizes a text-line crop to `height` (its width from the aspect
/// ratio, capped at `batch_w`) and writes it normalized (`x/255`, then mean/std) into `out`,
/// a 3 × height × batch_w CHW row whose right part stays as it was (zero padding).
pub fn rec_row(
    crop: &Bgr<'_>,
    height: usize,
    batch_w: usize,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut [f32],
) {
    let rw = rec_crop_width(height, crop.width as f64 / crop.height as f64, batch_w);
    let resized = resize_linear(crop, rw, height);
    let img = Bgr {
        width: rw,
        height,
        stride: rw * 3,
        data: &resized,
    };
    normalize_into(&img, mean, std, true, out, batch_w, height);
}

/// Detection input size (PaddleOCR `DetResizeForTest`, limit type `min` with a side cap):
/// scale up so the shorter side is at least `limit_side_len`, cap the longer side at
/// `max_side_limit`, then round each side to a multiple of 32 (at least 32).
pub fn det_size(
    h: usize,
    w: usize,
    limit_side_len: usize,
    max_side_limit: usize,
) -> (usize, usize) {
    let mut ratio = if h.min(w) < limit_side_len {
        limit_side_len as f64 / h.min(w) as f64
    } else {
        1.0
    };
    if (h.max(w) as f64 * ratio) > max_side_limit as f64 {
        ratio = max_side_limit as f64 / h.max(w) as f64;
    }
    let round32 = |v: f64| (((v / 32.0).round() as usize) * 32).max(32);
    (round32(h as f64 * ratio), round32(w as f64 * ratio))
}

/// Recognition batch width: `48 · max(320/48, widest ratio)` (PaddleOCR truncates).
pub fn rec_batch_width(height: usize, min_width: usize, max_ratio: f64) -> usize {
    (height as f64 * (min_width as f64 / height as f64).max(max_ratio)) as usize
}

/// Width a crop of aspect ratio `ratio` is resized to inside a batch of width `batch_w`.
pub fn rec_crop_width(height: usize, ratio: f64, batch_w: usize) -> usize {
    ((height as f64 * ratio).ceil() as usize).clamp(1, batch_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_is_exact() {
        let data: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let img = Bgr {
            width: 4,
            height: 3,
            stride: 12,
            data: &data,
        };
        assert_eq!(resize_linear(&img, 4, 3), data);
    }

    #[test]
    fn upscaling_a_flat_image_stays_flat() {
        let data = vec![200u8; 5 * 4 * 3];
        let img = Bgr {
            width: 5,
            height: 4,
            stride: 15,
            data: &data,
        };
        assert!(resize_linear(&img, 13, 9).iter().all(|v| *v == 200));
    }

    #[test]
    fn det_sizes_follow_paddleocr() {
        assert_eq!(det_size(1754, 1240, 64, 4000), (1760, 1248));
        assert_eq!(det_size(40, 100, 64, 4000), (64, 160));
        assert_eq!(det_size(3000, 5000, 64, 4000), (2400, 4000));
    }

    #[test]
    fn rec_widths_follow_paddleocr() {
        assert_eq!(rec_batch_width(48, 320, 9.0), 432);
        assert_eq!(rec_batch_width(48, 320, 2.0), 320);
        assert_eq!(rec_crop_width(48, 87.0 / 24.0, 432), 174);
    }
}
