//! Dense stride-1 convolution as k_h·k_w shifted matrix products, without an im2col buffer.
//!
//! Why: candle-core 0.11's CPU `conv2d` materializes an im2col matrix; for the DB neck/head's
//! 3×3 convs at stride 4 (96 → 24 channels on a 240×168 map) that buffer is 140 MB and the
//! conv ran at ~27 GFLOP/s. Here each kernel tap is one GEMM `W_tap [Cout×Cin] ×
//! X_shifted [Cin×L]` accumulated into a "wide" output that spans the padded width: for tap
//! (ky, kx) the shifted input is a contiguous run of each padded channel starting at
//! `ky·Wp + kx`, so the GEMM reads the padded input in place. The `kw − 1` extra columns per row
//! are dropped when the output is compacted. Weights are read in their [Cout, Cin, kh, kw]
//! layout through strides, no repacking.
//!
//! Only stride 1 runs here (the strided stem conv has 3 input channels and stays on candle);
//! other devices use candle's `conv2d`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use rayon::prelude::*;

use super::pointwise::ChannelEpilogue;

/// A buffer of `n` floats whose contents are not initialized: zeroing a 50 MB output only to
/// overwrite it cost 3 % of DETR's forward pass.
///
/// # Safety
/// The caller writes every element before reading it.
#[allow(clippy::uninit_vec)]
unsafe fn unwritten(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: capacity is n; f32 has no invalid bit patterns and the caller writes before
    // reading.
    unsafe { v.set_len(n) };
    v
}

/// Output maps of at least this many positions run one image at a time with the GEMM on every
/// thread, whatever the batch (256 × 256; recognition crops are far smaller, page-size maps far
/// larger).
const LARGE_MAP: usize = 256 * 256;

/// Bytes of a tile's working set (output columns plus the input rows its taps read): most of
/// a core's L2 (1 MiB on the EPYC and 4 MiB on the Apple cores this runs on), leaving room for
/// the GEMM's packed blocks.
const TILE_BYTES: usize = 640 * 1024;

/// Fewest columns in a tile: narrower GEMMs lose more to their edges than the cache saves.
const MIN_TILE: usize = 128;

/// Columns per tile of the wide output for `cout` outputs, `cin` inputs and a `halo` of extra
/// input columns the taps reach beyond a tile, out of `l` columns.
fn tile_columns(cout: usize, cin: usize, halo: usize, l: usize) -> usize {
    let per_column = (cout + cin) * std::mem::size_of::<f32>();
    let fixed = cin * halo * std::mem::size_of::<f32>();
    let n = TILE_BYTES.saturating_sub(fixed) / per_column;
    n.max(MIN_TILE).min(l.max(1))
}

/// The CPU op. Holds the weights ([Cout, Cin, kh, kw], f32) and the padding.
#[derive(Debug, Clone)]
pub struct DenseConvOp {
    pub weight: Vec<f32>,
    pub cout: usize,
    pub cin: usize,
    pub kernel: (usize, usize),
    /// (vertical, horizontal), applied on both sides.
    pub pad: (usize, usize),
    /// Fused per-channel epilogue, applied while compacting the output.
    pub epi: Option<ChannelEpilogue>,
    /// Per tap (`ky·kw + kx`), the input channels `(first, count)` whose weights can be
    /// nonzero (None: all). A folded stride-2 convolution's last tap row and column only see
    /// some phases; skipping the zero blocks saves 7 of its 16 channel-taps for a 3×3 kernel.
    /// Tap 0 must cover every channel (it initializes the output).
    pub taps: Option<Vec<(usize, usize)>>,
}

impl DenseConvOp {
    /// Convolves one image `x` (cin × h × w) into `o` (cout × ho × wo).
    fn image(&self, x: &[f32], (h, w): (usize, usize), o: &mut [f32], par: gemm::Parallelism) {
        let cin = self.cin;
        let (kh, kw) = self.kernel;
        let (ph, pw) = self.pad;
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        let (ho, wo) = (hp - kh + 1, wp - kw + 1);
        // Wide output: rows of the padded width; the last kw-1 columns of each row are junk.
        let l = (ho - 1) * wp + wo;
        // 1×1 kernels without horizontal padding write the output layout directly.
        let direct = wo == wp;
        let mut wide = if direct {
            Vec::new()
        } else {
            // SAFETY (of `unwritten`): the first tap's GEMM (all channels, `read_dst` false)
            // writes columns 0..l of every row, and compaction reads only those.
            unsafe { unwritten(self.cout * ho * wp) }
        };
        let padded_buf;
        let xp: &[f32] = if ph == 0 && pw == 0 {
            x
        } else {
            let mut p = vec![0f32; cin * hp * wp];
            for c in 0..cin {
                for y in 0..h {
                    let d = (c * hp + y + ph) * wp + pw;
                    p[d..d + w].copy_from_slice(&x[(c * h + y) * w..(c * h + y + 1) * w]);
                }
            }
            padded_buf = p;
            &padded_buf
        };
        // The output's address, shared by the tiles (which write disjoint columns).
        let dst = if direct {
            o.as_mut_ptr()
        } else {
            wide.as_mut_ptr()
        } as usize;
        // Columns per tile: every tap of a tile runs before the next tile starts, so the tile's
        // output (cout × tile) and the input rows its taps read (cin × (tile + (kh-1)·wp + kw))
        // stay in the core's L2 while the k_h·k_w GEMMs accumulate into it, instead of the
        // whole output streaming through L3 once per tap.
        let tile = tile_columns(self.cout, cin, (kh - 1) * wp + kw, l);
        let tiles = l.div_ceil(tile);
        let run_tile = |t: usize, gpar: gemm::Parallelism| {
            let j0 = t * tile;
            let n = tile.min(l - j0);
            for ky in 0..kh {
                for kx in 0..kw {
                    let first = ky == 0 && kx == 0;
                    let (c0, nc) = self.taps.as_ref().map_or((0, cin), |t| t[ky * kw + kx]);
                    // SAFETY: all pointers and strides stay inside `dst` (cout × ho·wp, or the
                    // output when ho·wp = ho·wo), `self.weight` (cout × cin × kh × kw) and
                    // `xp` (cin × hp × wp): the largest rhs index is
                    // (cin-1)·hp·wp + ky·wp + kx + l - 1 < cin·hp·wp because ky ≤ kh-1 = hp-ho
                    // and kx + l ≤ (ho-1)·wp + wp. Tiles write disjoint columns j0..j0+n.
                    unsafe {
                        gemm::gemm(
                            self.cout,
                            n,
                            nc,
                            (dst as *mut f32).add(j0),
                            1,
                            (ho * wp) as isize,
                            !first,
                            self.weight.as_ptr().add(c0 * kh * kw + ky * kw + kx),
                            (kh * kw) as isize,
                            (cin * kh * kw) as isize,
                            xp.as_ptr().add(c0 * hp * wp + ky * wp + kx + j0),
                            1,
                            (hp * wp) as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gpar,
                        );
                    }
                }
            }
        };
        match par {
            gemm::Parallelism::Rayon(threads) if tiles >= 2 * threads => {
                (0..tiles)
                    .into_par_iter()
                    .for_each(|t| run_tile(t, gemm::Parallelism::None));
            }
            _ => (0..tiles).for_each(|t| run_tile(t, par)),
        }
        let parallel = !matches!(par, gemm::Parallelism::None);
        let finish = |(co, oc): (usize, &mut [f32])| {
            if !direct {
                for (y, row) in oc.chunks_exact_mut(wo).enumerate() {
                    let s = co * ho * wp + y * wp;
                    row.copy_from_slice(&wide[s..s + wo]);
                }
            }
            if let Some(e) = &self.epi {
                e.apply_plane(co, oc);
            }
        };
        if parallel {
            o.par_chunks_mut(ho * wo).enumerate().for_each(finish);
        } else {
            o.chunks_mut(ho * wo).enumerate().for_each(finish);
        }
    }
}

impl CustomOp1 for DenseConvOp {
    fn name(&self) -> &'static str {
        "dense-conv2d-s1"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, cin, h, w) = layout.shape().dims4()?;
        if cin != self.cin {
            bail!("dense conv: {cin} input channels, weights for {}", self.cin)
        }
        let src = super::contiguous_f32("dense conv", storage, layout)?;
        let (kh, kw) = self.kernel;
        let (ph, pw) = self.pad;
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        if hp < kh || wp < kw {
            bail!("dense conv: input {h}x{w} smaller than the kernel")
        }
        let (ho, wo) = (hp - kh + 1, wp - kw + 1);
        let threads = crate::models::device::kernel_threads();
        // SAFETY (of `unwritten`): every element is written before it is read: by the first
        // tap's GEMM when the output is written directly, else by the compaction in `image`.
        let mut out = unsafe { unwritten(n * self.cout * ho * wo) };
        let plane = self.cout * ho * wo;
        // Several images: one single-threaded GEMM chain per image, images in parallel (the
        // per-image GEMMs of recognition batches are small, and splitting them across threads
        // costs more than it gains). One image: let the GEMM use every thread.
        // Large maps (DETR's backbone on whole pages) share one GEMM per image instead: two
        // threads on two big images compete for the cache (batch 4 ran 1.48× slower per page).
        let large = ho * wo >= LARGE_MAP;
        if n >= threads && threads > 1 && !large {
            out.par_chunks_mut(plane).enumerate().for_each(|(img, o)| {
                self.image(
                    &src[img * cin * h * w..(img + 1) * cin * h * w],
                    (h, w),
                    o,
                    gemm::Parallelism::None,
                );
            });
        } else {
            let par = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            for (img, o) in out.chunks_mut(plane).enumerate() {
                self.image(
                    &src[img * cin * h * w..(img + 1) * cin * h * w],
                    (h, w),
                    o,
                    par,
                );
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, self.cout, ho, wo))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn large_maps_split_into_column_tiles() {
        let halo = 2 * 82 + 3;
        let tile = tile_columns(48, 64, halo, 60 * 82);
        assert!((MIN_TILE..60 * 82 / 3).contains(&tile), "{tile}");
        assert_eq!(tile_columns(4, 3, 10, 50), 50);
    }

    #[test]
    fn matches_candle_conv2d() {
        let dev = Device::Cpu;
        for (cin, cout, k, pad, h, w, n) in [
            (5, 7, 3, (1, 1), 9, 11, 2),
            (4, 3, 1, (0, 0), 6, 5, 1),
            (6, 2, 3, (0, 1), 1, 8, 3),
            (3, 4, 5, (2, 2), 7, 7, 1),
            // Several column tiles (see `tile_columns`), on one image and on a batch.
            (64, 48, 3, (1, 1), 60, 80, 1),
            (64, 48, 3, (1, 1), 60, 80, 3),
        ] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).expect("x");
            let kh = if h == 1 { 1 } else { k };
            let wt = Tensor::randn(0f32, 1.0, (cout, cin, kh, k), &dev).expect("w");
            let op = DenseConvOp {
                weight: wt.flatten_all().and_then(|t| t.to_vec1()).expect("vec"),
                cout,
                cin,
                kernel: (kh, k),
                pad,
                epi: None,
                taps: None,
            };
            let got = x.apply_op1_no_bwd(&op).expect("op");
            let reference = x
                .pad_with_zeros(2, pad.0, pad.0)
                .and_then(|t| t.pad_with_zeros(3, pad.1, pad.1))
                .and_then(|t| t.conv2d(&wt, 0, 1, 1, 1))
                .expect("candle");
            assert_eq!(got.dims(), reference.dims());
            let diff = crate::models::ops::max_abs_diff(&got, &reference);
            assert!(
                diff < 1e-4,
                "cin {cin} cout {cout} k {k} pad {pad:?}: {diff}"
            );
        }
    }
}
