//! The GPU matmul ladder (the GPU chapter of `lessons/01-matmul`), three WGSL
//! kernels, each tested against the CPU product:
//!
//! 1. [`naive.wgsl`](naive.wgsl): one thread per output, straight from global memory.
//! 2. [`tiled.wgsl`](tiled.wgsl): 16 x 16 tiles staged in workgroup memory.
//! 3. [`register.wgsl`](register.wgsl): 64 x 64 tiles, each thread a 4 x 4 block
//!    of vec4 accumulators (register blocking).
//! 4. [`unrolled.wgsl`](unrolled.wgsl): rung 3 generated for given block sizes
//!    ([`Tiles`]), its inner loops unrolled when the source is written, so the
//!    accumulators are plain registers and no loop counter runs per multiply-add.
//!
//! All three take `(batch.., m, k) @ (batch.., k, n)` with any strides (a
//! transposed or broadcast operand is read in place, like the CPU's `MatRef`) and
//! write a contiguous `(batch.., m, n)`; the batch is the grid's z dimension.
//! `Tensor::matmul` on wgpu uses rung 4 with [`Tiles::DEFAULT`] (64 x 64 x 16,
//! unrolled): on an H200 it beat 128 x 128 blocks (8 x 8 per thread) and every
//! other size tried, at every shape measured (README's GPU table).
//!
//! ```
//! use tensor::wgpu::matmul::{matmul_with, MatmulKernel};
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let a = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap().to_device(&gpu).unwrap();
//! let b = Tensor::from_slice(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]).unwrap().to_device(&gpu).unwrap();
//! for k in MatmulKernel::ALL {
//!     assert_eq!(matmul_with(k, &a, &b).unwrap().to_vec().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);
//! }
//! ```

mod vec4;

pub use vec4::{matmul_vec4, vec4_ok};

use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// Which rung of the ladder to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    Naive,
    Tiled,
    Register,
    Unrolled,
}

impl MatmulKernel {
    /// All rungs, in ladder order.
    pub const ALL: [MatmulKernel; 4] = [
        MatmulKernel::Naive,
        MatmulKernel::Tiled,
        MatmulKernel::Register,
        MatmulKernel::Unrolled,
    ];

    /// The kernel's WGSL file (without [`PRELUDE`]; rung 4's is the template that
    /// [`Tiles::source`] fills in).
    pub fn wgsl(self) -> &'static str {
        match self {
            MatmulKernel::Naive => include_str!("naive.wgsl"),
            MatmulKernel::Tiled => include_str!("tiled.wgsl"),
            MatmulKernel::Register => include_str!("register.wgsl"),
            MatmulKernel::Unrolled => include_str!("unrolled.wgsl"),
        }
    }

    /// The compiled body and the output block per workgroup (rows, columns).
    fn source(self) -> (String, [usize; 2]) {
        match self {
            MatmulKernel::Unrolled => (
                Tiles::DEFAULT.source(),
                [Tiles::DEFAULT.bm, Tiles::DEFAULT.bn],
            ),
            MatmulKernel::Register => (self.wgsl().to_string(), [64, 64]),
            _ => (self.wgsl().to_string(), [16, 16]),
        }
    }
}

/// One unrolled store of rung 4: `accS` to row `row0 + ROW + 4 ty`, columns
/// `col0 + COL + 4 tx + 0..4`.
const STORE: &str = "    if (row0 + {ROW}u + l.y * 4u < m) {
        let col = col0 + {COL}u + l.x * 4u;
        let o = (wg.z * m + row0 + {ROW}u + l.y * 4u) * n + col;
        let v = acc{S};
        if (col < n) { out[o] = v.x; }
        if (col + 1u < n) { out[o + 1u] = v.y; }
        if (col + 2u < n) { out[o + 2u] = v.z; }
        if (col + 3u < n) { out[o + 3u] = v.w; }
    }
";

/// The block sizes of rung 4: a workgroup of 16 x 16 threads computes a `bm x bn`
/// block of C, `bk` values of k per stage. `bm`, `bn`: 64 or 128; `bk`: 4, 8 or 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub bm: usize,
    pub bn: usize,
    pub bk: usize,
}

impl Tiles {
    /// The default of rung 4: rung 3's sizes, unrolled.
    pub const DEFAULT: Tiles = Tiles {
        bm: 64,
        bn: 64,
        bk: 16,
    };

    fn check(self) -> Result<()> {
        let ok = [64, 128].contains(&self.bm)
            && [64, 128].contains(&self.bn)
            && [4, 8, 16].contains(&self.bk);
        if ok {
            Ok(())
        } else {
            Err(TensorError::invalid(
                "matmul (wgpu)",
                format!("unsupported tiles {self:?}: bm, bn in {{64, 128}}, bk in {{4, 8, 16}}"),
            ))
        }
    }

    /// [`unrolled.wgsl`](unrolled.wgsl) with the sizes filled in and the inner loop
    /// over k, its body and the stores unrolled.
    pub fn source(self) -> String {
        self.source_with(true)
    }

    /// [`Tiles::source`], with the loop over k inside a tile left a loop unless
    /// `unroll_k`.
    pub fn source_with(self, unroll_k: bool) -> String {
        self.fill(include_str!("unrolled.wgsl"), unroll_k)
    }

    /// `template` with the sizes and the generated pieces ({ACC}, {KLOOP},
    /// {STORES}) filled in.
    fn fill(self, template: &str, unroll_k: bool) -> String {
        use std::fmt::Write;
        let (rh, ch) = (self.bm / 64, self.bn / 64);
        let mut fmas = String::new();
        for h in 0..rh {
            let _ = writeln!(
                fmas,
                "            let a{h} = ta[kk * (BM / 4u) + {h}u * 16u + l.y];"
            );
        }
        for c in 0..ch {
            let _ = writeln!(
                fmas,
                "            let b{c} = tb[kk * (BN / 4u) + {c}u * 16u + l.x];"
            );
        }
        let acc: String = (0..4 * rh * ch)
            .map(|s| format!("    var acc{s} = vec4<f32>(0.0);\n"))
            .collect();
        let mut stores = String::new();
        for h in 0..rh {
            for (i, lane) in ["x", "y", "z", "w"].iter().enumerate() {
                for c in 0..ch {
                    let s = (h * 4 + i) * ch + c;
                    let _ = writeln!(
                        fmas,
                        "            acc{s} = fma(vec4<f32>(a{h}.{lane}), b{c}, acc{s});"
                    );
                    let store = STORE
                        .replace("{ROW}", &(h * 64 + i).to_string())
                        .replace("{COL}", &(c * 64).to_string())
                        .replace("{S}", &s.to_string());
                    stores.push_str(&store);
                }
            }
        }
        let kloop = if unroll_k {
            (0..self.bk)
                .map(|k| format!("        {{\n            let kk = {k}u;\n{fmas}        }}\n"))
                .collect()
        } else {
            format!("        for (var kk = 0u; kk < BK; kk = kk + 1u) {{\n{fmas}        }}\n")
        };
        template
            .replace("{BM}", &self.bm.to_string())
            .replace("{BN}", &self.bn.to_string())
            .replace("{BK}", &self.bk.to_string())
            .replace("{TA}", &(self.bk * self.bm / 4).to_string())
            .replace("{TB}", &(self.bk * self.bn / 4).to_string())
            .replace("{ACC}", acc.trim_end())
            .replace("{KLOOP}", kloop.trim_end())
            .replace("{STORES}", stores.trim_end())
    }
}

/// Bindings and batch offsets shared by the kernels. `meta`: `[m, n, k,
/// batch_rank, a_off, a_row_stride, a_k_stride, b_off, b_k_stride, b_col_stride,
/// batch dims.., a batch strides.., b batch strides..]`.
pub const PRELUDE: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// Storage offset of matrix `z` of the batch for operand `which` (0 = a, 1 = b).
fn batch_base(z: u32, which: u32) -> u32 {
    let rank = info[3];
    var off = info[4u + 3u * which];
    var rem = z;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let size = info[10u + d];
        off = off + (rem % size) * info[10u + rank * (1u + which) + d];
        rem = rem / size;
    }
    return off;
}
fn a_base(z: u32) -> u32 { return batch_base(z, 0u); }
fn b_base(z: u32) -> u32 { return batch_base(z, 1u); }
"#;

/// `lhs @ rhs` for `lhs: (batch.., m, k)` and `rhs: (batch.., k, n)` with equal
/// (already broadcast) batch dims, on the GPU with `kernel`.
pub fn matmul_with(kernel: MatmulKernel, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let (source, block) = kernel.source();
    launch(&source, block, lhs, rhs)
}

/// [`matmul_with`] rung 4 with other block sizes (for tuning on a given GPU).
pub fn matmul_tiles(tiles: Tiles, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    tiles.check()?;
    launch(&tiles.source(), [tiles.bm, tiles.bn], lhs, rhs)
}

/// Run a kernel `body` of one's own (after [`PRELUDE`], one `block[0] x block[1]`
/// block of C per workgroup, the batch on z), for experiments such as
/// `Tiles::source_with(true)`.
pub fn matmul_body(body: &str, block: [usize; 2], lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    launch(body, block, lhs, rhs)
}

fn launch(body: &str, block: [usize; 2], lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    launch_with(PRELUDE, body, block, lhs, rhs)
}

fn launch_with(
    prelude: &str,
    body: &str,
    block: [usize; 2],
    lhs: &Tensor,
    rhs: &Tensor,
) -> Result<Tensor> {
    let op = "matmul";
    let dev = device_of(&[lhs, rhs]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let (lhs, rhs) = (on(&dev, lhs)?, on(&dev, rhs)?);
    let (lr, rr) = (lhs.rank(), rhs.rank());
    if lr < 2 || lr != rr || lhs.dims()[..lr - 2] != rhs.dims()[..rr - 2] {
        return Err(TensorError::ShapeMismatch {
            op: "matmul (wgpu)",
            lhs: lhs.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        });
    }
    let (m, k, n) = (lhs.dims()[lr - 2], lhs.dims()[lr - 1], rhs.dims()[rr - 1]);
    if rhs.dims()[rr - 2] != k {
        return Err(TensorError::ShapeMismatch {
            op: "matmul (wgpu)",
            lhs: lhs.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        });
    }
    let batch_dims = &lhs.dims()[..lr - 2];
    let batch: usize = batch_dims.iter().product();
    let mut out_dims = batch_dims.to_vec();
    out_dims.extend([m, n]);
    let out = output(&dev, op, out_dims)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, lhs.numel().max(rhs.numel()).max(out.numel()))?;
    let (ls, rs) = (lhs.strides(), rhs.strides());
    let mut meta = vec![
        m,
        n,
        k,
        lr - 2,
        lhs.layout().offset(),
        ls[lr - 2],
        ls[lr - 1],
        rhs.layout().offset(),
        rs[rr - 2],
        rs[rr - 1],
    ];
    meta.extend(batch_dims);
    meta.extend(&ls[..lr - 2]);
    meta.extend(&rs[..rr - 2]);
    let meta: Vec<u32> = meta.into_iter().map(|v| v as u32).collect();
    let groups = [
        n.div_ceil(block[1]) as u32,
        m.div_ceil(block[0]) as u32,
        batch as u32,
    ];
    let source = format!("{prelude}{body}");
    let bufs = [buf(op, &out)?, buf(op, &lhs)?, buf(op, &rhs)?];
    kernel::run(&dev, op, &source, &meta, &bufs, groups)?;
    Ok(out)
}

/// The fastest rung for the operands: 5 ([`matmul_vec4`]) when [`vec4_ok`], else 4.
pub fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    if vec4_ok(lhs, rhs) {
        return matmul_vec4(lhs, rhs);
    }
    matmul_with(MatmulKernel::Unrolled, lhs, rhs)
}
