//! Rung 4 of the matmul ladder: packing plus a register-blocked SIMD micro-kernel
//! (lesson `lessons/01-matmul`), in the BLIS / GotoBLAS style.
//!
//! What it adds over [`super::blocked`]:
//!
//! - **Register blocking.** The micro-kernel ([`super::kernels`]) computes a whole
//!   tile of C in registers: with AVX-512, `6 x 64` (24 zmm accumulators: each step
//!   loads four vectors of B, broadcasts 6 values of A and issues 24 fused
//!   multiply-adds) or `12 x 32`; with AVX2, `6 x 16` in twelve 8-lane registers.
//!   Every value loaded is used 6 to 64 times, so memory traffic stops being the limit.
//! - **Packing.** A `kc x nc` panel of B is copied into `nr`-wide slivers (row `p` of a
//!   sliver is `nr` adjacent floats, zero-padded at the edge), so the kernel reads B
//!   with unit stride whatever the strides of the original view: a transposed B is
//!   absorbed by the packing, not copied (a B of at most 256 KB with contiguous rows
//!   is read where it lies instead). A is packed the same way into `mr`-tall
//!   slivers (column `p` is `mr` adjacent floats) only where that pays (see [`Plan`]):
//!   the kernel broadcasts one value of A per row and step, which it can as well read
//!   where it lies (`A[i][p]` at any strides), and for most shapes copying A costs
//!   more than it saves.
//! - **Cache blocking** for Zen 5 (48 KB L1d, 1 MB L2 a core): a panel of B holds
//!   about 512 KB ([`B_PANEL_BYTES`], up to [`KC`] = 512 deep) and stays in L2; the rows
//!   of A one group of tiles needs (`6 x kc`, up to 12 KB) stay in L1 while the panel
//!   streams past them, sliver by sliver; tiles are stored straight into C (edge
//!   tiles through a small buffer).
//!
//! The x86_64 kernels use AVX-512F or AVX2 + FMA via `std::arch`, chosen at run time
//! with `is_x86_feature_detected!`; everywhere else (or on an old CPU) a portable
//! kernel runs, written so the compiler can vectorise it. Sums are accumulated in
//! panels of at most [`KC`] (with fused multiply-adds), so results match
//! [`super::naive`] to rounding, not bit for bit.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{simd, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! simd::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use std::cell::RefCell;

use super::kernels::{ABlock, BSliver, CTile, MR_MAX, NR_MAX};
pub use super::kernels::{Kernel, MR};
use super::MatRef;

/// Deepest panel (rows of B, columns of A per pass over C); a product `k` deep is
/// cut into `ceil(k / KC)` equal panels.
pub const KC: usize = 512;
/// Depth of a panel for narrow products (n <= [`NARROW_N`]): the B panel is only
/// `n` wide, so it can be deeper, and A's rows are read in longer runs.
pub const KC_NARROW: usize = 1024;
/// Rows of C per block (a multiple of every tile height, 6 and 12).
pub const MC: usize = 120;
/// The widest panel of B packed at once (a multiple of every sliver width).
pub const NC: usize = 3072;
/// Bytes of packed B a panel aims for: half the L2 of the core it runs on (1 MB on
/// Zen 5), so the panel stays in L2 while every row of A streams past it.
pub const B_PANEL_BYTES: usize = 512 * 1024;
/// A B of at most this many floats (256 KB), with unit column stride, is read where
/// it lies instead of being packed (when the plan reads A in place too).
pub const B_IN_PLACE_FLOATS: usize = 64 * 1024;
/// Products at most this many columns wide take the narrow path (one sliver).
pub const NARROW_N: usize = NR_MAX;
/// Products at most this deep pack A for the tallest tile (see [`Plan`]).
pub const SHALLOW_K: usize = 64;

/// How one product is cut up. It depends on the kernel and the sizes only, never on
/// the strides, so a transposed view gives the same bits as a copy, and the threaded
/// rung (which uses the same plan) the same bits as this one.
///
/// | case | A | tile | panel depth |
/// |---|---|---|---|
/// | narrow, `n <= 64` (AVX-512, AVX2) | read in place | AVX-512 `6 x n` rounded up to 16; AVX2 `6 x 16` | up to 1024 |
/// | shallow, `k <= 64` (AVX-512) | packed | `12 x 32` | `k` |
/// | otherwise, AVX-512 | read in place | `6 x 64` | up to 512 |
/// | otherwise, AVX2 | read in place | `6 x 16` | up to 512 |
/// | portable, any | packed | `6 x 16` | up to 512 |
///
/// Why (measured on Zen 5 against the `gemm` crate and OpenBLAS, `benches/peers`):
/// reading A in place saves a copy of A per panel of B, which is most of the
/// overhead at N = 256..1024 and all of it for a narrow product such as attention's
/// `P V` (n = 40: every element of A is used only 40 times). A narrow product fits in
/// one sliver (48 columns for n = 40, not 32 + 32). A shallow product (attention's
/// `Q K^T`, k = 40) runs 40-step tiles, where the 12-row packed tile, with half the
/// per-tile overhead per flop, wins. Panels of equal depth: k = 640 is two of 320, not
/// 512 + 128. The panel width `nc` keeps a `kc x nc` panel of B near
/// [`B_PANEL_BYTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kernel: Kernel,
    /// Pack A into `mr`-tall slivers, or read it where it lies.
    pub pack_a: bool,
    /// Rows of a tile.
    pub mr: usize,
    /// Columns of a tile (width of a B sliver).
    pub nr: usize,
    /// Depth of a panel.
    pub kc: usize,
    /// Width of a panel.
    pub nc: usize,
}

impl Plan {
    /// The plan for `C (m x n) = A (m x k) * B (k x n)` on `kernel`.
    pub fn new(kernel: Kernel, k: usize, n: usize) -> Plan {
        let avx512 = matches!(kernel, Kernel::Avx512(_));
        let (pack_a, mr, nr, kc) = if kernel.reads_a_in_place() && n <= NARROW_N {
            let nr = if avx512 {
                n.next_multiple_of(16).max(16)
            } else {
                kernel.nr()
            };
            (false, MR, nr, KC_NARROW)
        } else if kernel.reads_a_in_place() && !(avx512 && k <= SHALLOW_K) {
            (false, MR, if avx512 { NR_MAX } else { kernel.nr() }, KC)
        } else {
            (true, kernel.mr(), kernel.nr(), KC)
        };
        // Equal panels: k = 640 is two panels of 320, not 512 + 128 (the C traffic of
        // a panel is the same whatever its depth, so a thin last panel wastes it).
        let kc = k.div_ceil(k.div_ceil(kc).max(1)).max(1);
        let nc = (B_PANEL_BYTES / 4 / kc / nr * nr).clamp(nr, NC);
        Plan {
            kernel,
            pack_a,
            mr,
            nr,
            kc,
            nc,
        }
    }

    /// Width of sliver `s` of a panel `nc` wide: `nr`, except that where the kernel
    /// has narrower tiles (AVX-512 with A in place: 16 to 64 columns) the last sliver
    /// is only as wide as its columns need (n = 91: 64 + 32 columns, not 64 + 64).
    pub(crate) fn sliver_width(&self, s: usize, nc: usize) -> usize {
        let rest = nc.saturating_sub(s * self.nr);
        if rest < self.nr && !self.pack_a && matches!(self.kernel, Kernel::Avx512(_)) {
            rest.next_multiple_of(16).max(16)
        } else {
            self.nr
        }
    }

    /// Whether to read whole slivers of `b` where it lies rather than packing them:
    /// when A is read in place too (the kernels that take any B row stride), B's rows
    /// are contiguous, and all of B fits in L2 (so a small product does not pay for a
    /// copy of B, and the threads of the parallel rung need not meet to share one).
    /// Reading B in place or packed gives the same bits.
    pub(crate) fn reads_b_in_place(&self, b: &MatRef<'_>) -> bool {
        !self.pack_a
            && (b.col_stride == 1 || b.cols <= 1)
            && b.rows.saturating_mul(b.cols) <= B_IN_PLACE_FLOATS
    }

    /// Floats of a packed B panel for a product `n` wide.
    pub(crate) fn bpack_len(&self, n: usize) -> usize {
        self.kc * self.nc.min(n.next_multiple_of(self.nr))
    }

    /// Floats of a packed A block of `rows` rows (0 when A is read in place).
    pub(crate) fn apack_len(&self, rows: usize) -> usize {
        if self.pack_a {
            self.kc * rows.next_multiple_of(self.mr)
        } else {
            0
        }
    }
}

thread_local! {
    /// Each thread's packing buffer, kept between calls (it grows to the largest
    /// panel the thread has packed, about 1 MB, and is never zeroed again).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of scratch space whose start is 64-byte aligned, so
/// packed rows of B line up with cache lines. The contents are whatever the last user
/// left: packing writes every element it later reads. If this thread's buffer is in
/// use (a gemm inside a rayon task that this thread picked up while waiting inside
/// another gemm), a fresh one is allocated.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let run = |buf: &mut Vec<f32>| {
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        let off = buf.as_ptr().align_offset(64).min(16);
        f(&mut buf[off..off + len])
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        Err(_) => run(&mut Vec::new()),
    })
}

/// Pack rows `pc..pc+kc`, columns `jc..jc+nc` of B into slivers: sliver `s` covers
/// columns `s*nr ..`, occupies `dst[s*kc*nr ..]`, and row `p` of it is
/// `plan.sliver_width(s, nc)` floats (zero past column `nc`). With `in_place` (see
/// [`Plan::reads_b_in_place`]) only a last sliver narrower than `nr` is packed, at
/// `dst[0 ..]`: the kernels read the whole ones from B itself.
pub(crate) fn pack_b(
    b: MatRef<'_>,
    (pc, kc): (usize, usize),
    (jc, nc): (usize, usize),
    plan: &Plan,
    in_place: bool,
    dst: &mut [f32],
) {
    let panel = b.rows_range(pc, kc).cols_range(jc, nc);
    for s in 0..nc.div_ceil(plan.nr) {
        let (j0, width) = (s * plan.nr, plan.sliver_width(s, nc));
        let whole = j0 + plan.nr <= nc;
        if in_place && whole {
            continue;
        }
        let start = if in_place { 0 } else { s * kc * plan.nr };
        pack_b_sliver(panel, j0, width, &mut dst[start..start + kc * width]);
    }
}

/// A `kc x nc` panel of B as the micro-kernels read it: packed slivers, or (when
/// `in_place` holds B's data, the index of the panel's first element and its row
/// stride) whole slivers from B itself and only a narrower last one from `packed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BPanel<'a> {
    pub packed: &'a [f32],
    pub in_place: Option<(&'a [f32], usize, usize)>,
}

impl<'a> BPanel<'a> {
    /// The panel `(pc, jc)` of `b`, read in place or from `packed` as [`pack_b`] left it.
    pub(crate) fn new(
        b: &MatRef<'a>,
        (pc, jc): (usize, usize),
        in_place: bool,
        packed: &'a [f32],
    ) -> Self {
        let start = b.offset + pc * b.row_stride + jc * b.col_stride;
        BPanel {
            packed,
            in_place: in_place.then_some((b.data, start, b.row_stride)),
        }
    }

    /// Sliver `s` (`width` floats a row; `whole` if all `nr` of its columns exist).
    fn sliver(&self, s: usize, (kc, nr): (usize, usize), width: usize, whole: bool) -> BSliver<'a> {
        match self.in_place {
            Some((data, start, stride)) if whole => BSliver {
                data: &data[start + s * nr..],
                stride,
            },
            Some(_) => BSliver {
                data: self.packed,
                stride: width,
            },
            None => BSliver {
                data: &self.packed[s * kc * nr..],
                stride: width,
            },
        }
    }
}

/// The sliver of a `kc x nc` panel of B from column `j0`, `width` floats a row, into
/// `sliver` (`kc * width` floats).
pub(crate) fn pack_b_sliver(panel: MatRef<'_>, j0: usize, width: usize, sliver: &mut [f32]) {
    let nr = width;
    let w = nr.min(panel.cols - j0);
    let part = panel.cols_range(j0, w);
    if part.col_stride == 1 || w == 1 {
        // Rows of B are contiguous: one copy per row.
        for (p, row) in sliver.chunks_exact_mut(nr).enumerate() {
            match part.row_slice(p) {
                Some(src) => row[..w].copy_from_slice(src),
                None => row[..w]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x = part.at(p, j)),
            }
            row[w..].fill(0.0);
        }
    } else if let Some(cols) = columns(part.t()) {
        // A transposed B: its columns are contiguous; scatter each into the sliver.
        for (j, col) in cols.enumerate() {
            for (row, &v) in sliver.chunks_exact_mut(nr).zip(col) {
                row[j] = v;
            }
        }
        for row in sliver.chunks_exact_mut(nr) {
            row[w..].fill(0.0);
        }
    } else {
        for (p, row) in sliver.chunks_exact_mut(nr).enumerate() {
            row[..w]
                .iter_mut()
                .enumerate()
                .for_each(|(j, x)| *x = part.at(p, j));
            row[w..].fill(0.0);
        }
    }
}

/// The rows of `m` as slices, when every row is contiguous (`col_stride == 1`).
fn columns<'a>(m: MatRef<'a>) -> Option<impl Iterator<Item = &'a [f32]>> {
    (m.col_stride == 1 || m.cols <= 1).then(|| (0..m.rows).filter_map(move |i| m.row_slice(i)))
}

/// Pack rows `ic..ic+mc`, columns `pc..pc+kc` of A into `mr`-tall slivers: sliver `t`
/// occupies `dst[t*kc*mr ..]`, column `p` of it is `mr` floats (zero past row `mc`).
pub(crate) fn pack_a(
    a: MatRef<'_>,
    (ic, mc): (usize, usize),
    (pc, kc): (usize, usize),
    mr: usize,
    dst: &mut [f32],
) {
    let block = a.rows_range(ic, mc).cols_range(pc, kc);
    for (t, sliver) in dst
        .chunks_exact_mut(kc * mr)
        .take(mc.div_ceil(mr))
        .enumerate()
    {
        let i0 = t * mr;
        let h = mr.min(mc - i0);
        let part = block.rows_range(i0, h);
        if let (true, Some(cols)) = (h == mr, columns(part.t())) {
            // A transposed A: column p of the sliver is `mr` adjacent floats already.
            for (col, src) in sliver.chunks_exact_mut(mr).zip(cols) {
                col.copy_from_slice(src);
            }
            continue;
        }
        for r in 0..h {
            // Column p of the sliver gets A[i0 + r][p] at position p*mr + r.
            match part.row_slice(r) {
                Some(src) => {
                    for (col, &v) in sliver.chunks_exact_mut(mr).zip(src) {
                        col[r] = v;
                    }
                }
                None => {
                    for (p, col) in sliver.chunks_exact_mut(mr).enumerate() {
                        col[r] = part.at(r, p);
                    }
                }
            }
        }
        for col in sliver.chunks_exact_mut(mr) {
            col[h..].fill(0.0);
        }
    }
}

/// Everything one block of rows of C needs for one `(jc, pc)` panel: pack its rows
/// of A (or, with `apack = None`, read them in place), then, for each `mr`-row group
/// of the block, run the micro-kernel against every sliver of the panel, storing
/// into C (first panel, `pc == 0`) or adding to it. The rows of A a group needs stay
/// in L1 while the panel of B streams from L2; whole tiles go straight to C, edge
/// tiles through a small buffer.
///
/// `c_rows` is rows `ic..ic+mc` of C (full width `n`); `bpanel` is the panel of B.
#[allow(clippy::too_many_arguments)]
pub(crate) fn macro_kernel(
    plan: &Plan,
    a: MatRef<'_>,
    (ic, mc): (usize, usize),
    (pc, kc): (usize, usize),
    (jc, nc): (usize, usize),
    bpanel: BPanel<'_>,
    apack: Option<&mut [f32]>,
    c_rows: &mut [f32],
    n: usize,
) {
    let (kernel, mr, nr) = (plan.kernel, plan.mr, plan.nr);
    let apack = apack.map(|buf| {
        pack_a(a, (ic, mc), (pc, kc), mr, buf);
        &*buf
    });
    let add = pc > 0;
    let mut tile = [0.0f32; MR_MAX * NR_MAX];
    for t in 0..mc.div_ceil(mr) {
        let ir = t * mr;
        let h = mr.min(mc - ir);
        // A read in place: rows past the edge (r >= h) read row h - 1 again; their
        // results are dropped below.
        let in_place = ABlock {
            data: a.data,
            rows: std::array::from_fn(|r| {
                a.offset + (ic + ir + r.min(h - 1)) * a.row_stride + pc * a.col_stride
            }),
            step: a.col_stride,
        };
        for s in 0..nc.div_ceil(nr) {
            let (jr, ws) = (s * nr, plan.sliver_width(s, nc));
            let w = ws.min(nc - jr);
            let b_sliver = bpanel.sliver(s, (kc, nr), ws, jr + nr <= nc);
            let whole = h == mr && w == ws;
            let c = if whole {
                CTile {
                    data: &mut *c_rows,
                    offset: ir * n + jc + jr,
                    ld: n,
                    add,
                }
            } else {
                CTile {
                    data: &mut tile,
                    offset: 0,
                    ld: ws,
                    add: false,
                }
            };
            match apack {
                Some(packed) => {
                    let sliver = &packed[t * kc * mr..(t + 1) * kc * mr];
                    kernel.run_packed(kc, sliver, b_sliver.data, c);
                }
                None => kernel.run(kc, in_place, b_sliver, ws, c),
            }
            if whole {
                continue;
            }
            for (r, t_row) in tile.chunks_exact(ws).take(h).enumerate() {
                let start = (ir + r) * n + jc + jr;
                let c_row = &mut c_rows[start..start + w];
                if add {
                    for (c, &v) in c_row.iter_mut().zip(t_row) {
                        *c += v;
                    }
                } else {
                    c_row.copy_from_slice(&t_row[..w]);
                }
            }
        }
    }
}

/// C = A * B with packing and the fastest micro-kernel this CPU has. Contract as
/// [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::detect(), a, b, c);
}

/// C = A * B with packing and the portable micro-kernel (no `std::arch`).
pub fn gemm_portable(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::portable(), a, b, c);
}

/// C = A * B with the given micro-kernel, on the calling thread.
pub fn gemm_with(kernel: Kernel, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_planned(&Plan::new(kernel, a.cols, b.cols), a, b, c);
}

/// C = A * B cut up as `plan` says, on the calling thread.
pub(crate) fn gemm_planned(plan: &Plan, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let b_len = plan.bpack_len(n);
    let b_in_place = plan.reads_b_in_place(&b);
    with_scratch(b_len + plan.apack_len(MC.min(m)), |buf| {
        let (bpack, apack) = buf.split_at_mut(b_len);
        for jc in (0..n).step_by(plan.nc) {
            let nc = plan.nc.min(n - jc);
            for pc in (0..k).step_by(plan.kc) {
                let kc = plan.kc.min(k - pc);
                pack_b(b, (pc, kc), (jc, nc), plan, b_in_place, bpack);
                let bpanel = BPanel::new(&b, (pc, jc), b_in_place, bpack);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    macro_kernel(
                        plan,
                        a,
                        (ic, mc),
                        (pc, kc),
                        (jc, nc),
                        bpanel,
                        plan.pack_a.then_some(&mut *apack),
                        &mut c[ic * n..(ic + mc) * n],
                        n,
                    );
                }
            }
        }
    });
}

#[cfg(test)]
#[path = "simd_tests.rs"]
mod tests;
