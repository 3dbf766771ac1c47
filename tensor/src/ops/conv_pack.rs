//! Implicit im2col: input patches packed straight into the micro-kernel's B panel
//! (the convolutions lesson, after im2col + GEMM in [`crate::ops::conv_im2col`]).
//!
//! im2col unfolds the input into `col: (K, H'*W')`, `K = C/groups * kh * kw`, row
//! `k = (c, ky, kx)`, column = output pixel; then GEMM packs `col` *again* into
//! `nr`-wide slivers. This module skips the middle step: for a tile of consecutive
//! output pixels and a depth block `(pc, kc)` of `K`, it writes
//! `panel[sliver j / nr][row k - pc][lane j % nr] = x[c, oy*sh + ky*dh - ph,
//! ox*sw + kx*dw - pw]` (0 outside the input) directly, the layout
//! [`crate::matmul::packed::gemm_packed_b`] asks for. Nothing bigger than one panel
//! (`kc x tile` floats) is ever unfolded, whatever the image size.
//!
//! How a panel row is filled: the tile's pixels are cut into *segments*, one per
//! output row `oy`. With column stride `sw = 1`, tap `(c, ky, kx)` of a segment
//! reads one run of image row `oy*sh + ky*dh - ph`: zeros where the run leaves the
//! image (padding), the row's floats in between. With `sw > 1` the packer first copies the
//! *window* of input columns all `kx` taps of the segment read, padding zeros
//! included, split into `sw` phases (every `sw`-th column), so that each tap is again
//! one contiguous run. The runs are copied into the slivers, at most `nr` floats
//! at a time, as fixed-size vector moves. The rows of the next channels are
//! prefetched: a plane apart, they are too far for the hardware to guess.
//!
//! ```
//! use tensor::Tensor;
//! // A 3x3 image, 2x2 kernel of ones, padding 1, stride 2: corners of the padded image.
//! let x = Tensor::arange(1.0, 10.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let y = x.conv2d(&w, None, (2, 2), (1, 1), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![1.0, 5.0, 11.0, 28.0]);
//! ```

use crate::ops::conv::Conv2dGeom;

/// Where the taps of one input row `(c, ky)` read from, for one segment.
#[derive(Clone, Copy)]
enum Window {
    /// The row lies in the padding: every tap reads zeros.
    Zero,
    /// Stride 1: the image row starting at `x[start]`; tap `kx` reads columns
    /// `ix0 + kx*dw ..`, zero outside `0..w`.
    Row(usize),
    /// Stride `s > 1`: the packer's buffer, `s` phases of `cap` floats each.
    Built { cap: usize },
}

/// Packs panels of patches of one image and group of a convolution.
pub(crate) struct PatchPacker<'a> {
    x: &'a [f32],
    g: &'a Conv2dGeom,
    nr: usize,
    win: Vec<f32>,
}

impl<'a> PatchPacker<'a> {
    /// A packer over the input data `x: (N, C, H, W)` for slivers `nr` wide.
    pub fn new(x: &'a [f32], g: &'a Conv2dGeom, nr: usize) -> Self {
        PatchPacker {
            x,
            g,
            nr,
            win: Vec::new(),
        }
    }

    /// Fill `panel` (`kc` rows, `panel.len() / kc` columns, sliver layout) with rows
    /// `pc..pc+kc` of the unfolded input of the channels starting at `x_off`
    /// (one image and group), output pixels `t0..t0+tw`; columns past `tw` are 0.
    pub fn pack(
        &mut self,
        x_off: usize,
        (t0, tw): (usize, usize),
        (pc, kc): (usize, usize),
        panel: &mut [f32],
    ) {
        let g = *self.g;
        let nr = self.nr;
        zero_tail(panel, kc, nr, tw);
        let end = t0 + tw;
        let mut q = t0;
        while q < end {
            let (oy, xa) = (q / g.ow, q % g.ow);
            let seg = (g.ow - xa).min(end - q);
            let j0 = q - t0;
            // Input columns the segment reads, over all taps kx: ix0 .. ix0 + wl.
            let ix0 = (xa * g.sw) as isize - g.pw as isize;
            let wl = (seg - 1) * g.sw + (g.kw - 1) * g.dw + 1;
            let mut cached = usize::MAX;
            let mut window = Window::Zero;
            for k in pc..pc + kc {
                let (cky, kx) = (k / g.kw, k % g.kw);
                if cky != cached {
                    window = self.window(x_off, cky, oy, ix0, wl);
                    cached = cky;
                }
                let (p, o) = (k - pc, kx * g.dw);
                match window {
                    Window::Zero => scatter_zero(panel, kc, nr, p, j0, seg),
                    Window::Row(start) => {
                        // Columns s0 .. s0 + seg of the row: zeros, the image, zeros.
                        let s0 = ix0 + o as isize;
                        let lead = (-s0).clamp(0, seg as isize) as usize;
                        let mid = (g.w as isize - s0).clamp(lead as isize, seg as isize) as usize;
                        scatter_zero(panel, kc, nr, p, j0, lead);
                        if mid > lead {
                            let from = start + (s0 + lead as isize) as usize;
                            scatter(
                                panel,
                                kc,
                                nr,
                                p,
                                j0 + lead,
                                &self.x[from..from + mid - lead],
                            );
                        }
                        scatter_zero(panel, kc, nr, p, j0 + mid, seg - mid);
                    }
                    Window::Built { cap } => {
                        let at = (o % g.sw) * cap + o / g.sw;
                        scatter(panel, kc, nr, p, j0, &self.win[at..at + seg]);
                    }
                }
            }
            q += seg;
        }
    }

    /// The window of input row `(c, ky)` (`cky = c*kh + ky`) for output row `oy`:
    /// for stride `s > 1`, columns `ix0 .. ix0 + wl` copied (zero outside the image)
    /// and split into `s` phases.
    fn window(&mut self, x_off: usize, cky: usize, oy: usize, ix0: isize, wl: usize) -> Window {
        let g = self.g;
        self.prefetch(x_off, cky + PREFETCH_AHEAD, oy, ix0, wl);
        let (c, ky) = (cky / g.kh, cky % g.kh);
        let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
        if iy < 0 || iy as usize >= g.h {
            return Window::Zero;
        }
        let row = x_off + (c * g.h + iy as usize) * g.w;
        let s = g.sw;
        if s == 1 {
            return Window::Row(row);
        }
        let cap = wl.div_ceil(s);
        self.win.clear();
        self.win.resize(s * cap, 0.0);
        // Window positions lo..hi lie inside the image.
        let w = g.w as isize;
        let lo = (-ix0).clamp(0, wl as isize) as usize;
        let hi = (w - ix0).clamp(lo as isize, wl as isize) as usize;
        if hi == lo {
            return Window::Built { cap };
        }
        let src = &self.x[row + (ix0 + lo as isize) as usize..row + (ix0 + hi as isize) as usize];
        if s == 2 {
            // Deinterleave pairs (i, i + 1) from i = lo: i goes to phase lo % 2,
            // i + 1 to the other one (a loop LLVM vectorises with shuffles).
            let (p0, p1) = self.win.split_at_mut(cap);
            let (a, b) = if lo.is_multiple_of(2) {
                (p0, p1)
            } else {
                (p1, p0)
            };
            let a = &mut a[lo / 2..];
            let b = &mut b[lo.div_ceil(2)..];
            let pairs = src.chunks_exact(2);
            if let Some(&last) = pairs.remainder().first() {
                a[(hi - lo) / 2] = last;
            }
            for ((d0, d1), pair) in a.iter_mut().zip(b.iter_mut()).zip(pairs) {
                *d0 = pair[0];
                *d1 = pair[1];
            }
        } else {
            // Phase r holds window positions r, r + s, ..: position i goes to
            // r*cap + i/s. Walk each phase with a stride, no division per element.
            for r in 0..s {
                let i0 = lo + (r + s - lo % s) % s; // first i >= lo with i % s == r
                if i0 >= hi {
                    continue;
                }
                let at = r * cap + i0 / s;
                let dst = &mut self.win[at..at + (hi - i0).div_ceil(s)];
                let from = src[i0 - lo..].iter().step_by(s);
                dst.iter_mut().zip(from).for_each(|(d, &v)| *d = v);
            }
        }
        Window::Built { cap }
    }
}

impl PatchPacker<'_> {
    /// Ask the cache for the part of input row `cky` that [`Self::window`] will read
    /// for output row `oy`, if that row exists: the rows of successive channels are
    /// a plane apart, a stride the hardware prefetchers do not follow, so without
    /// this each one is a cache miss.
    fn prefetch(&self, x_off: usize, cky: usize, oy: usize, ix0: isize, wl: usize) {
        let g = self.g;
        let (c, ky) = (cky / g.kh, cky % g.kh);
        let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
        if c >= g.cg || iy < 0 || iy as usize >= g.h {
            return;
        }
        let row = x_off + (c * g.h + iy as usize) * g.w;
        let lo = ix0.clamp(0, g.w as isize) as usize;
        let hi = (ix0 + wl as isize).clamp(lo as isize, g.w as isize) as usize;
        if let Some(run) = self.x.get(row + lo..row + hi) {
            // One touch per 64-byte line (16 floats), and the run's last float.
            for line in run.chunks(16) {
                prefetch_read(line);
            }
            if let Some(last) = run.last() {
                prefetch_read(std::slice::from_ref(last));
            }
        }
    }
}

/// Rows of `(c, ky)` ahead of the one being packed that [`PatchPacker::prefetch`]
/// asks for (a few hundred cycles of packing: about one trip to memory).
const PREFETCH_AHEAD: usize = 16;

/// A hint to load the cache line holding `data[0]` (no effect on the result).
#[inline(always)]
fn prefetch_read(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint that never faults and changes no memory;
        // the pointer comes from a live slice anyway, and SSE is part of x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Set the columns `tw..` of a sliver-layout panel to 0 (only the last sliver can
/// have any).
fn zero_tail(panel: &mut [f32], kc: usize, nr: usize, tw: usize) {
    let lane = tw % nr;
    if lane == 0 {
        return;
    }
    let last = (tw / nr) * kc * nr;
    for row in panel[last..last + kc * nr].chunks_exact_mut(nr) {
        row[lane..].fill(0.0);
    }
}

/// Copy `src` into row `p` of the panel, columns `j0..j0 + src.len()`, cutting it at
/// sliver boundaries.
#[inline]
fn scatter(panel: &mut [f32], kc: usize, nr: usize, p: usize, j0: usize, src: &[f32]) {
    let mut j = j0;
    let mut rest = src;
    while !rest.is_empty() {
        let lane = j % nr;
        let len = (nr - lane).min(rest.len());
        let at = (j / nr) * kc * nr + p * nr + lane;
        copy_run(&mut panel[at..at + len], &rest[..len]);
        j += len;
        rest = &rest[len..];
    }
}

/// Zero row `p` of the panel, columns `j0..j0 + len`.
#[inline]
fn scatter_zero(panel: &mut [f32], kc: usize, nr: usize, p: usize, j0: usize, len: usize) {
    let mut j = j0;
    let end = j0 + len;
    while j < end {
        let lane = j % nr;
        let run = (nr - lane).min(end - j);
        let at = (j / nr) * kc * nr + p * nr + lane;
        zero_run(&mut panel[at..at + run]);
        j += run;
    }
}

/// `dst.copy_from_slice(src)` for the runs of at most one sliver row this module
/// copies, as fixed-size moves (a run of 16..=31 is two overlapping 16-float moves):
/// a few vector loads and stores instead of a `memcpy` call.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    match n {
        32 => mv::<32>(dst, src),
        16..=31 => {
            mv::<16>(&mut dst[..16], &src[..16]);
            mv::<16>(&mut dst[n - 16..], &src[n - 16..n]);
        }
        8..=15 => {
            mv::<8>(&mut dst[..8], &src[..8]);
            mv::<8>(&mut dst[n - 8..], &src[n - 8..n]);
        }
        4..=7 => {
            mv::<4>(&mut dst[..4], &src[..4]);
            mv::<4>(&mut dst[n - 4..], &src[n - 4..n]);
        }
        0..=3 => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v;
            }
        }
        _ => dst.copy_from_slice(src),
    }
}

/// `dst.fill(0.0)` as [`copy_run`] does its copies.
#[inline(always)]
fn zero_run(dst: &mut [f32]) {
    let n = dst.len();
    match n {
        16..=32 => {
            zero::<16>(&mut dst[..16]);
            zero::<16>(&mut dst[n - 16..]);
        }
        8..=15 => {
            zero::<8>(&mut dst[..8]);
            zero::<8>(&mut dst[n - 8..]);
        }
        4..=7 => {
            zero::<4>(&mut dst[..4]);
            zero::<4>(&mut dst[n - 4..]);
        }
        _ => dst.iter_mut().for_each(|d| *d = 0.0),
    }
}

/// Copy exactly `N` floats (both slices must be `N` long; else nothing happens,
/// which the callers above rule out).
#[inline(always)]
fn mv<const N: usize>(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [f32; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
        *d = *s;
    }
}

/// Zero exactly `N` floats (`dst` must be `N` long).
#[inline(always)]
fn zero<const N: usize>(dst: &mut [f32]) {
    if let Ok(d) = <&mut [f32; N]>::try_from(dst) {
        *d = [0.0; N];
    }
}
