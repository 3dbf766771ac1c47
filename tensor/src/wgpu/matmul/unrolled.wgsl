// Rung 4: rung 3 written by a program, for any block size.
//
// Rung 3 gives each thread a 4 x 4 patch of C: 16 multiply-adds per 2 workgroup
// reads. Here the block is BM x BN for the same 256 threads (64 x 64 by default, or
// 128 wide), so a thread owns (BM / 16) x (BN / 16) values: per k it reads
// BM / 64 + BN / 64 vec4s and does 4 * BM / 64 * BN / 64 vec4 multiply-adds. The
// host writes the loops over k, over the thread's rows and over its columns out in
// full (`Tiles::source`): the accumulators become plain variables, which the
// compiler keeps in registers, and no loop counter or index runs per multiply-add.
// On an H200 the unrolled 64 x 64 kernel was the fastest; 128 x 128 blocks (8 x 8
// per thread) were slower there, not faster.
//
// A thread's rows are not contiguous: rows 4 * ty + i of every 64-row half (and the
// same for columns), so that neighbouring threads read neighbouring vec4s of the
// tiles (no workgroup-memory bank conflicts).
//
// The tiles are filled with the fast-moving index along memory: k for a row-major
// A, rows for a transposed one (and the same for B), so that a warp's loads fall on
// few cache lines whatever the strides. BM, BN, BK are substituted by
// `matmul::Tiles` before compiling.

const BM: u32 = {BM}u;
const BN: u32 = {BN}u;
const BK: u32 = {BK}u;

var<workgroup> ta: array<vec4<f32>, {TA}>; // [k][row / 4]
var<workgroup> tb: array<vec4<f32>, {TB}>; // [k][col / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(local_invocation_id) l: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let ars = info[5];
    let aks = info[6];
    let bks = info[8];
    let bcs = info[9];
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let ab = a_base(wg.z);
    let bb = b_base(wg.z);
    // acc{s}, s = (h * 4 + i) * (BN / 64) + c: row 4 * ty + i of row half h,
    // columns 4 * tx.. of column half c (separate variables, so they stay in registers).
{ACC}
    for (var t = 0u; t < k; t = t + BK) {
        for (var j = 0u; j < BM * BK / 256u; j = j + 1u) {
            let e = li + 256u * j;
            var r = e / BK;
            var kk = e % BK;
            if (aks != 1u) {
                r = e % BM;
                kk = e / BM;
            }
            let gr = row0 + r;
            let gk = t + kk;
            ta[kk * (BM / 4u) + r / 4u][r % 4u] =
                select(0.0, a[ab + gr * ars + gk * aks], gr < m && gk < k);
        }
        for (var j = 0u; j < BN * BK / 256u; j = j + 1u) {
            let e = li + 256u * j;
            var kb = e / BN;
            var c = e % BN;
            if (bcs != 1u) {
                kb = e % BK;
                c = e / BK;
            }
            let gc = col0 + c;
            let gk = t + kb;
            tb[kb * (BN / 4u) + c / 4u][c % 4u] =
                select(0.0, b[bb + gk * bks + gc * bcs], gk < k && gc < n);
        }
        workgroupBarrier();
        // For kk in 0..BK (a loop, or unrolled): load a0.., b0.. from the tiles, then
        // acc{s} += a_h[i] * b_c, unrolled by `Tiles::source`.
{KLOOP}
        workgroupBarrier();
    }
    // Unrolled too (an array indexed by a variable would leave the registers):
    // acc{s} -> row row0 + h * 64 + 4 * ty + i, columns col0 + c * 64 + 4 * tx + j.
{STORES}
}
