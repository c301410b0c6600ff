//! GOT-OCR 2.0's processor: images to normalized tiles, and the chat prompt around them.
//!
//! - **Resize**: every tile is resized to the model's square input (1024²) without keeping the
//!   aspect, bicubic, as the reference processor does it ([`resize_bicubic`]); the 8-bit result
//!   is ×1/255 and normalized with CLIP's mean and standard deviation.
//! - **Tiles** (`crop_to_patches`, optional): the grid of 1–12 tiles whose aspect ratio is
//!   closest to the image's (ties go to the larger grid when the image is big enough to fill
//!   it), each tile a crop of the image resized to the grid, plus a thumbnail of the whole image
//!   when there is more than one tile.
//! - **Prompt**: `<|im_start|>system\n{system}<|im_end|><|im_start|>user\n<img>` + 256 ×
//!   `<imgpad>` per tile + `</img>\n{query}<|im_end|><|im_start|>assistant\n`, with the query
//!   `" OCR: "` (plain) or `" OCR with format: "` (formatted).

use candle_core::{Device, Result, Tensor};
use image::{RgbImage, imageops};

use crate::models::ocr::preprocess::Bgr;

/// CLIP's normalization (GOT's image processor).
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The system prompt of GOT's chat template.
pub const SYSTEM: &str =
    "You should follow the instructions carefully and explain your answers in detail.";

/// What GOT is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// `" OCR: "`: plain text.
    #[default]
    Plain,
    /// `" OCR with format: "`: Markdown/LaTeX-formatted text.
    Format,
}

impl Query {
    pub fn text(self) -> &'static str {
        match self {
            Query::Plain => " OCR: ",
            Query::Format => " OCR with format: ",
        }
    }
}

/// The text of GOT's prompt for `tiles` tiles of `tokens_per_tile` image tokens each, with the
/// special tokens written out (for a tokenizer that knows them).
pub fn prompt_text(tiles: usize, tokens_per_tile: usize, query: Query) -> String {
    format!(
        "<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n<img>{}</img>\n{}<|im_end|><|im_start|>assistant\n",
        "<imgpad>".repeat(tiles * tokens_per_tile),
        query.text()
    )
}

/// An RGB copy of a BGR view.
pub fn to_rgb(img: &Bgr<'_>) -> RgbImage {
    let mut out = RgbImage::new(img.width as u32, img.height as u32);
    for y in 0..img.height {
        let row = &img.data[y * img.stride..y * img.stride + img.width * 3];
        for x in 0..img.width {
            let p = &row[x * 3..x * 3 + 3];
            out.put_pixel(x as u32, y as u32, image::Rgb([p[2], p[1], p[0]]));
        }
    }
    out
}

/// Keys' cubic with a = −0.5 (Pillow's and torch's bicubic).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One axis of the resize: for each output index, the first source index and the fixed-point
/// weights, and the precision (bits) they are scaled by: `fixed` (Pillow's 22 bits), or as
/// many as keep the largest weight within 16 bits (torchvision's).
fn axis_weights(inp: usize, out: usize, fixed: Option<u32>) -> (Vec<(usize, Vec<i32>)>, u32) {
    let scale = inp as f64 / out as f64;
    let (support, inv) = if scale >= 1.0 {
        (2.0 * scale, 1.0 / scale)
    } else {
        (2.0, 1.0)
    };
    let mut float = Vec::with_capacity(out);
    let mut wmax = 0.0f64;
    for i in 0..out {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(inp as i64) as usize;
        let mut w: Vec<f64> = (xmin..xmax)
            .map(|j| cubic((j as f64 - center + 0.5) * inv))
            .collect();
        let sum: f64 = w.iter().sum();
        if sum != 0.0 {
            w.iter_mut().for_each(|v| *v /= sum);
        }
        wmax = w.iter().copied().fold(wmax, f64::max);
        float.push((xmin, w));
    }
    let prec = fixed.unwrap_or_else(|| {
        (0..22u32)
            .find(|p| (0.5 + wmax * f64::from(1u32 << (p + 1))) as i64 >= 1 << 15)
            .unwrap_or(22)
    });
    let fixed = float
        .into_iter()
        .map(|(x, w)| {
            let w = w
                .iter()
                .map(|v| {
                    let s = v * f64::from(1u32 << prec);
                    (if s < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
                })
                .collect();
            (x, w)
        })
        .collect();
    (fixed, prec)
}

/// `src` resized to `width` × `height` as torchvision's antialiased bicubic resizes 8-bit
/// images (the reference processor's path): separable, width first, each pass rounded to 8
/// bits, fixed-point weights. Written out because the float resamplers (the `image` crate's
/// Catmull-Rom, Pillow's own) skip the 8-bit rounding between the passes and differ by up to
/// 16 levels at sharp edges; this one reproduces the reference exactly (tested).
pub fn resize_bicubic(src: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize_fixed_point(src, width, height, None)
}

/// `src` resized as Pillow's `Image.resize` (bicubic, its default) resizes RGB images: the
/// same separable passes with 22-bit weights (DePlot's header and chart are stacked with it).
pub fn resize_bicubic_pillow(src: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize_fixed_point(src, width, height, Some(22))
}

fn resize_fixed_point(src: &RgbImage, width: usize, height: usize, fixed: Option<u32>) -> RgbImage {
    let (w0, h0) = (src.width() as usize, src.height() as usize);
    let pass = |data: &[u8], (w, h): (usize, usize), horizontal: bool, out_len: usize| {
        let inp = if horizontal { w } else { h };
        let (weights, prec) = axis_weights(inp, out_len, fixed);
        let (ow, oh) = if horizontal {
            (out_len, h)
        } else {
            (w, out_len)
        };
        let mut out = vec![0u8; ow * oh * 3];
        let round = 1i64 << (prec.max(1) - 1);
        for y in 0..oh {
            for x in 0..ow {
                let (start, ws) = &weights[if horizontal { x } else { y }];
                for c in 0..3 {
                    let mut acc = round;
                    for (k, wk) in ws.iter().enumerate() {
                        let (sx, sy) = if horizontal {
                            (start + k, y)
                        } else {
                            (x, start + k)
                        };
                        acc += i64::from(data[(sy * w + sx) * 3 + c]) * i64::from(*wk);
                    }
                    out[(y * ow + x) * 3 + c] = (acc >> prec).clamp(0, 255) as u8;
                }
            }
        }
        (out, (ow, oh))
    };
    let mut data = src.as_raw().clone();
    let mut dims = (w0, h0);
    if width != w0 {
        (data, dims) = pass(&data, dims, true, width);
    }
    if height != h0 {
        (data, dims) = pass(&data, dims, false, height);
    }
    RgbImage::from_raw(dims.0 as u32, dims.1 as u32, data)
        .expect("the passes fill width × height × 3")
}

/// `img` resized to `size`² and normalized: CHW f32 values.
pub fn normalize_tile(img: &RgbImage, size: usize) -> Vec<f32> {
    let r = resize_bicubic(img, size, size);
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, p) in r.pixels().enumerate() {
        for c in 0..3 {
            // The reference's fused rescale and normalization, in f32.
            out[c * plane + i] = (p[c] as f32 - MEAN[c] * 255.0) / (STD[c] * 255.0);
        }
    }
    out
}

/// The tile grid (columns, rows) `crop_to_patches` picks for a `width`×`height` image with
/// `min..=max` tiles of `tile` pixels: the grid whose aspect ratio is closest to the image's;
/// on a tie, the later (larger) grid when the image's area exceeds half the grid's.
pub fn tile_grid(
    width: usize,
    height: usize,
    min: usize,
    max: usize,
    tile: usize,
) -> (usize, usize) {
    let mut grids: Vec<(usize, usize)> = Vec::new();
    for n in min..=max {
        for c in 1..=n {
            for r in 1..=n {
                let k = c * r;
                if k >= min && k <= max && !grids.contains(&(c, r)) {
                    grids.push((c, r));
                }
            }
        }
    }
    grids.sort_by_key(|(c, r)| c * r);
    let aspect = width as f64 / height as f64;
    let area = (width * height) as f64;
    let mut best = (1, 1);
    let mut best_diff = f64::INFINITY;
    for (c, r) in grids {
        let diff = (aspect - c as f64 / r as f64).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (c, r);
        } else if diff == best_diff && area > 0.5 * (tile * tile * c * r) as f64 {
            best = (c, r);
        }
    }
    best
}

/// The tiles of `img` for the model: one tile (the whole image), or with `max_tiles > 1` the
/// grid's crops plus a thumbnail; (n, 3, size, size) on `device`.
pub fn tiles(img: &RgbImage, size: usize, max_tiles: usize, device: &Device) -> Result<Tensor> {
    let mut data = Vec::new();
    let mut n = 0;
    if max_tiles <= 1 {
        data.extend(normalize_tile(img, size));
        n = 1;
    } else {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (c, r) = tile_grid(w, h, 1, max_tiles, size);
        let big = resize_bicubic(img, c * size, r * size);
        for ty in 0..r {
            for tx in 0..c {
                let crop = imageops::crop_imm(
                    &big,
                    (tx * size) as u32,
                    (ty * size) as u32,
                    size as u32,
                    size as u32,
                )
                .to_image();
                data.extend(normalize_tile(&crop, size));
                n += 1;
            }
        }
        if n > 1 {
            data.extend(normalize_tile(img, size));
            n += 1;
        }
    }
    Tensor::from_vec(data, (n, 3, size, size), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_has_one_imgpad_per_image_token() {
        let p = prompt_text(2, 256, Query::Plain);
        assert_eq!(p.matches("<imgpad>").count(), 512);
        assert!(p.ends_with(" OCR: <|im_end|><|im_start|>assistant\n"));
        assert!(prompt_text(1, 4, Query::Format).contains("</img>\n OCR with format: "));
    }

    #[test]
    fn a_uniform_image_normalizes_to_the_same_value_everywhere() {
        let img = RgbImage::from_pixel(37, 50, image::Rgb([255, 128, 0]));
        let t = normalize_tile(&img, 16);
        assert_eq!(t.len(), 3 * 256);
        let want0 = (1.0 - MEAN[0]) / STD[0];
        assert!(t[..256].iter().all(|v| (v - want0).abs() < 1e-6));
        let want2 = (0.0 - MEAN[2]) / STD[2];
        assert!(t[512..].iter().all(|v| (v - want2).abs() < 1e-6));
    }
}
