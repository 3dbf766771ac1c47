//! The gathers behind [`crate::ops::conv_batched`]: where each kernel tap reads, and
//! moving floats to and from those places (the convolutions lesson).
//!
//! For a convolution geometry, `Taps` holds, for each tap `t = ky*kw + kx` and
//! output pixel `p = oy*W' + ox`, the offset `iy*W + ix` (with `iy = oy*sh + ky*dh -
//! ph`, `ix` the same) that the tap reads in an input plane, or `PAD` where it
//! reads padding. With it, row `k = (c, t)` of the unfolded input (im2col) for
//! pixels `p..` is a gather `plane_c[idx_t[p]]`, and col2im is the scatter-add back.
//!
//! `Gather` does these moves: plain loops, or AVX-512 gathers (16 lanes, a mask
//! for the padding lanes) when the CPU has them.
//!
//! ```
//! use tensor::Tensor;
//! // A 3x3 image, 2x2 kernel of ones, stride 1, no padding: every 2x2 window sum.
//! let x = Tensor::arange(0.0, 18.0, 1.0).unwrap().reshape([2, 1, 3, 3]).unwrap();
//! let y = x.conv2d(&Tensor::ones([1, 1, 2, 2]), None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0, 44.0, 48.0, 56.0, 60.0]);
//! ```

use crate::matmul::kernels::Kernel;
use crate::ops::conv::Conv2dGeom;

/// A tap that reads padding.
pub(crate) const PAD: u32 = u32::MAX;

/// For each kernel tap and output pixel, the offset read in an input plane.
pub(crate) struct Taps {
    /// Tap-major: `[t][p]`.
    idx: Vec<u32>,
    /// Pixel-major: `[p][t]`.
    idx_t: Vec<u32>,
    ohw: usize,
    /// Taps per channel, `kh * kw`.
    pub taps: usize,
}

impl Taps {
    /// The table of `g` (its input planes must have fewer than `PAD` floats).
    pub fn new(g: &Conv2dGeom) -> Taps {
        let (ohw, taps) = (g.oh * g.ow, g.kh * g.kw);
        let mut idx = Vec::with_capacity(taps * ohw);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                    for ox in 0..g.ow {
                        let ix = (ox * g.sw + kx * g.dw) as isize - g.pw as isize;
                        let inside =
                            (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                        idx.push(if inside {
                            (iy as usize * g.w + ix as usize) as u32
                        } else {
                            PAD
                        });
                    }
                }
            }
        }
        let idx_t = (0..ohw * taps)
            .map(|i| idx[(i % taps) * ohw + i / taps])
            .collect();
        Taps {
            idx,
            idx_t,
            ohw,
            taps,
        }
    }

    /// The offsets of tap `t` for pixels `p..p + len` of an image.
    pub fn row(&self, t: usize, p: usize, len: usize) -> &[u32] {
        &self.idx[t * self.ohw + p..t * self.ohw + p + len]
    }

    /// The offsets of every tap for pixels `p..p + len`, pixel-major.
    pub fn cols(&self, p: usize, len: usize) -> &[u32] {
        &self.idx_t[p * self.taps..(p + len) * self.taps]
    }
}

/// The pieces of the pixel run `q0..q0 + len` (pixel `q = n*ohw + p`) that lie in
/// one image each: `(image n, first pixel p, length, offset in the run)`.
pub(crate) fn segments(
    q0: usize,
    len: usize,
    ohw: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut q = q0;
    let end = q0 + len;
    std::iter::from_fn(move || {
        (q < end && ohw > 0).then(|| {
            let (n, p) = (q / ohw, q % ohw);
            let l = (ohw - p).min(end - q);
            let seg = (n, p, l, q - q0);
            q += l;
            seg
        })
    })
}

/// The lanes of a panel row that [`Gather::lanes`] fills: lane `l` is unfolded row
/// `k = (c, t)`, read at `c*hw + offset of tap t` of a group's channels.
pub(crate) struct LaneMap {
    /// `c * hw` per lane (0 for lanes past the last row).
    pub ch: Vec<u32>,
    /// Tap per lane.
    pub tap: Vec<u32>,
    /// Whether the lane is a real row.
    pub real: Vec<bool>,
}

impl LaneMap {
    /// Lanes for rows `k0..k0 + width` of an unfolding with `k` rows, `taps` taps
    /// per channel and planes of `hw` floats.
    pub fn new(k0: usize, width: usize, k: usize, taps: usize, hw: usize) -> LaneMap {
        let rows = k0..k0 + width;
        LaneMap {
            ch: rows
                .clone()
                .map(|kk| if kk < k { (kk / taps * hw) as u32 } else { 0 })
                .collect(),
            tap: rows.clone().map(|kk| (kk % taps) as u32).collect(),
            real: rows.map(|kk| kk < k).collect(),
        }
    }
}

/// How the gathers run: plain loops, or AVX-512 (only made from a kernel whose
/// variant proves the CPU has it).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Gather {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512(crate::matmul::kernels::CpuHasAvx512),
    /// AVX2: only [`Gather::transpose8`] uses it (its gathers are not faster).
    #[cfg(target_arch = "x86_64")]
    Avx2(crate::matmul::kernels::CpuHasAvx2Fma),
}

impl Gather {
    /// AVX-512 gathers with the AVX-512 micro-kernel, loops otherwise.
    pub fn for_kernel(kernel: Kernel) -> Gather {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(t) => Gather::Avx512(t),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(t) => Gather::Avx2(t),
            _ => Gather::Scalar,
        }
    }

    /// Transpose one 8 x 8 block: `dst[j*ld + i] = src[i*ls + j]` for `i, j < 8`.
    /// Panics (a bounds check) unless `src` holds `7*ls + 8` floats and `dst`
    /// `7*ld + 8`.
    #[inline]
    pub fn transpose8(self, src: &[f32], ls: usize, dst: &mut [f32], ld: usize) {
        let (src, dst) = (&src[..7 * ls + 8], &mut dst[..7 * ld + 8]);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: either token proves AVX2 (AVX-512F implies it); the slices
            // hold every float the block reads and writes (sliced just above).
            Gather::Avx512(_) | Gather::Avx2(_) => unsafe { x86::transpose8(src, ls, dst, ld) },
            _ => {
                for j in 0..8 {
                    for (i, d) in dst[j * ld..j * ld + 8].iter_mut().enumerate() {
                        *d = src[i * ls + j];
                    }
                }
            }
        }
    }

    /// `dst[j] = plane[idx[j]]`, 0 where `idx[j]` is past the plane (padding).
    #[inline]
    pub fn gather(self, plane: &[f32], idx: &[u32], dst: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F.
            Gather::Avx512(_) if plane.len() <= i32::MAX as usize => unsafe {
                x86::gather(plane, idx, dst)
            },
            _ => {
                for (d, &i) in dst.iter_mut().zip(idx) {
                    *d = plane.get(i as usize).copied().unwrap_or(0.0);
                }
            }
        }
    }

    /// `plane[idx[j]] += src[j]` where `idx[j]` lies in the plane; the offsets must
    /// be all different (those of one tap are).
    #[inline]
    pub fn scatter_add(self, plane: &mut [f32], idx: &[u32], src: &[f32]) {
        // Plain loops on every CPU: AVX-512 scatters measured slower on Zen 5.
        let _ = self;
        for (&i, &v) in idx.iter().zip(src) {
            if let Some(d) = plane.get_mut(i as usize) {
                *d += v;
            }
        }
    }

    /// Panel rows of the unfolded input, lanes = unfolded rows: for each pixel `j`
    /// of `cols` (`taps` offsets per pixel, from [`Taps::cols`]) and lane `l` of
    /// `map`, `dst[j * width + l] = xs[map.ch[l] + offset of tap map.tap[l]]`, 0 for
    /// padding and for lanes that are not real rows. `xs` holds a group's channels,
    /// planes of `hw` floats.
    pub fn lanes(
        self,
        xs: &[f32],
        hw: usize,
        cols: &[u32],
        taps: usize,
        map: &LaneMap,
        dst: &mut [f32],
    ) {
        let width = map.ch.len();
        match self {
            #[cfg(target_arch = "x86_64")]
            Gather::Avx512(_)
                if taps <= 16 && width.is_multiple_of(16) && xs.len() <= i32::MAX as usize =>
            {
                // SAFETY: the token proves AVX-512F.
                unsafe { x86::lanes(xs, hw, cols, taps, map, dst) }
            }
            _ => {
                for (offs, row) in cols.chunks_exact(taps).zip(dst.chunks_exact_mut(width)) {
                    for (l, d) in row.iter_mut().enumerate() {
                        let o = offs[map.tap[l] as usize] as usize;
                        *d = if o < hw && map.real[l] {
                            xs[map.ch[l] as usize + o]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX-512 versions of [`super::Gather`]'s moves. Every lane an instruction
    //! reads or writes is under a mask that first checks its index against the
    //! slice's length.

    use std::arch::x86_64::*;

    use super::LaneMap;

    /// The first `n` of 16 lanes.
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F; `plane.len() <= i32::MAX`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather(plane: &[f32], idx: &[u32], dst: &mut [f32]) {
        let n = idx.len().min(dst.len());
        let lim = _mm512_set1_epi32(plane.len() as i32);
        let mut j = 0;
        while j < n {
            let m = first(n - j);
            // SAFETY: lanes under `m` lie in idx and dst (j + lane < n); the gather
            // reads only lanes whose index is below plane.len().
            unsafe {
                let iv = _mm512_maskz_loadu_epi32(m, idx.as_ptr().add(j).cast());
                let ok = _mm512_mask_cmplt_epu32_mask(m, iv, lim);
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), ok, iv, plane.as_ptr());
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), m, v);
            }
            j += 16;
        }
    }

    /// # Safety
    /// The CPU must support AVX2; `src` must hold `7*ls + 8` floats, `dst` `7*ld + 8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose8(src: &[f32], ls: usize, dst: &mut [f32], ld: usize) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        // SAFETY: rows i*ls .. i*ls + 8 (i < 8) lie in src, i*ld .. i*ld + 8 in dst.
        unsafe {
            let r0 = _mm256_loadu_ps(s);
            let r1 = _mm256_loadu_ps(s.add(ls));
            let r2 = _mm256_loadu_ps(s.add(2 * ls));
            let r3 = _mm256_loadu_ps(s.add(3 * ls));
            let r4 = _mm256_loadu_ps(s.add(4 * ls));
            let r5 = _mm256_loadu_ps(s.add(5 * ls));
            let r6 = _mm256_loadu_ps(s.add(6 * ls));
            let r7 = _mm256_loadu_ps(s.add(7 * ls));
            // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            _mm256_storeu_ps(d, _mm256_permute2f128_ps::<0x20>(u0, u4));
            _mm256_storeu_ps(d.add(ld), _mm256_permute2f128_ps::<0x20>(u1, u5));
            _mm256_storeu_ps(d.add(2 * ld), _mm256_permute2f128_ps::<0x20>(u2, u6));
            _mm256_storeu_ps(d.add(3 * ld), _mm256_permute2f128_ps::<0x20>(u3, u7));
            _mm256_storeu_ps(d.add(4 * ld), _mm256_permute2f128_ps::<0x31>(u0, u4));
            _mm256_storeu_ps(d.add(5 * ld), _mm256_permute2f128_ps::<0x31>(u1, u5));
            _mm256_storeu_ps(d.add(6 * ld), _mm256_permute2f128_ps::<0x31>(u2, u6));
            _mm256_storeu_ps(d.add(7 * ld), _mm256_permute2f128_ps::<0x31>(u3, u7));
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F; `taps <= 16`, `map` has a multiple of 16
    /// lanes, `xs.len() <= i32::MAX`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lanes(
        xs: &[f32],
        hw: usize,
        cols: &[u32],
        taps: usize,
        map: &LaneMap,
        dst: &mut [f32],
    ) {
        let width = map.ch.len();
        let chunks = width / 16;
        // Per 16 lanes: tap, channel offset, real-row mask.
        let mut tv = Vec::with_capacity(chunks);
        let mut cv = Vec::with_capacity(chunks);
        let mut rv = Vec::with_capacity(chunks);
        for h in 0..chunks {
            let (t, c) = (&map.tap[h * 16..h * 16 + 16], &map.ch[h * 16..h * 16 + 16]);
            // SAFETY: both slices are exactly 16 u32s.
            unsafe {
                tv.push(_mm512_loadu_si512(t.as_ptr().cast()));
                cv.push(_mm512_loadu_si512(c.as_ptr().cast()));
            }
            let real = map.real[h * 16..h * 16 + 16]
                .iter()
                .enumerate()
                .fold(0u16, |m, (l, &r)| m | (u16::from(r) << l));
            rv.push(real);
        }
        let hwv = _mm512_set1_epi32(hw.min(i32::MAX as usize) as i32);
        let lim = _mm512_set1_epi32(xs.len() as i32);
        let tm = first(taps);
        for (offs, row) in cols.chunks_exact(taps).zip(dst.chunks_exact_mut(width)) {
            // SAFETY: `tm` covers exactly the `taps` offsets of this pixel.
            let ov = unsafe { _mm512_maskz_loadu_epi32(tm, offs.as_ptr().cast()) };
            for h in 0..chunks {
                let o = _mm512_permutexvar_epi32(tv[h], ov);
                let i = _mm512_add_epi32(o, cv[h]);
                // Real offsets are below hw; the sum is then below xs.len() for a
                // real lane, checked again so that no lane can read outside xs.
                let ok = _mm512_mask_cmplt_epu32_mask(rv[h], o, hwv);
                let ok = _mm512_mask_cmplt_epu32_mask(ok, i, lim);
                // SAFETY: gathered lanes are below xs.len(); row holds 16 floats at
                // h * 16 (width = 16 * chunks).
                unsafe {
                    let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), ok, i, xs.as_ptr());
                    _mm512_storeu_ps(row.as_mut_ptr().add(h * 16), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::test_util::values;

    /// Offsets in 0..2*len (half of them padding), and PAD.
    fn offsets(n: usize, len: usize, seed: u64) -> Vec<u32> {
        values(n, seed)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i % 7 == 3 {
                    PAD
                } else {
                    ((v.abs() * 1000.0) as usize % (2 * len).max(1)) as u32
                }
            })
            .collect()
    }

    /// Every [`Gather`] this CPU has against the plain loops, lengths 0 to 40.
    #[test]
    fn every_gather_matches_the_loops() {
        let all: Vec<Gather> = Kernel::available()
            .into_iter()
            .map(Gather::for_kernel)
            .collect();
        for n in [0, 1, 5, 15, 16, 17, 33, 40] {
            let plane = values(23, n as u64);
            let idx = offsets(n, plane.len(), 7 + n as u64);
            let want: Vec<f32> = idx
                .iter()
                .map(|&i| plane.get(i as usize).copied().unwrap_or(0.0))
                .collect();
            // Distinct offsets for the scatter: a shuffled 0..n (n <= 40), some
            // past the plane.
            let distinct: Vec<u32> = (0..n as u32).map(|i| (i * 17) % 41).collect();
            let src = values(n, 99);
            let mut want_plane = plane.clone();
            for (&i, &v) in distinct.iter().zip(&src) {
                if let Some(d) = want_plane.get_mut(i as usize) {
                    *d += v;
                }
            }
            for &gth in &all {
                let mut got = vec![f32::NAN; n];
                gth.gather(&plane, &idx, &mut got);
                assert_eq!(got, want, "{gth:?} gather n {n}");
                let mut p = plane.clone();
                gth.scatter_add(&mut p, &distinct, &src);
                assert_eq!(p, want_plane, "{gth:?} scatter_add n {n}");
            }
        }
    }

    #[test]
    fn every_lane_gather_matches_the_loops() {
        let all: Vec<Gather> = Kernel::available()
            .into_iter()
            .map(Gather::for_kernel)
            .collect();
        let (hw, cg, taps) = (11, 5, 9);
        let xs = values(cg * hw, 3);
        for (k, k0, width) in [
            (45, 0, 32),
            (45, 32, 32),
            (9, 0, 16),
            (45, 16, 16),
            (7, 0, 5),
        ] {
            let map = LaneMap::new(k0, width, k, taps, hw);
            let pixels = 6;
            let cols = offsets(pixels * taps, hw, k as u64);
            let mut want = vec![0.0f32; pixels * width];
            for j in 0..pixels {
                for l in 0..width {
                    let kk = k0 + l;
                    let o = cols[j * taps + kk % taps] as usize;
                    if kk < k && o < hw {
                        want[j * width + l] = xs[kk / taps * hw + o];
                    }
                }
            }
            for &gth in &all {
                let mut got = vec![f32::NAN; pixels * width];
                gth.lanes(&xs, hw, &cols, taps, &map, &mut got);
                assert_eq!(got, want, "{gth:?} k {k} k0 {k0} width {width}");
            }
        }
    }

    #[test]
    fn every_transpose8_swaps_rows_and_columns() {
        let src = values(7 * 11 + 8, 5);
        for gth in Kernel::available().into_iter().map(Gather::for_kernel) {
            let mut dst = vec![f32::NAN; 7 * 9 + 8];
            gth.transpose8(&src, 11, &mut dst, 9);
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(dst[j * 9 + i], src[i * 11 + j], "{gth:?} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn segments_cut_runs_at_images() {
        let s: Vec<_> = segments(5, 12, 4).collect();
        assert_eq!(
            s,
            vec![(1, 1, 3, 0), (2, 0, 4, 3), (3, 0, 4, 7), (4, 0, 1, 11)]
        );
        assert_eq!(segments(0, 0, 4).count(), 0);
    }
}
