// Rung 3: register blocking with vec4.
//
// A 16 x 16 workgroup now computes a 64 x 64 block of C: each thread owns a 4 x 4
// patch, held in registers as four vec4<f32> accumulators. Per step of k the tiles
// are 64 x 16 (A, stored k-major) and 16 x 64 (B); every thread loads 4 elements
// of each. Then, for each of the 16 values of k, a thread reads one vec4 column of
// its A rows and one vec4 row of its B columns from shared memory and does a 4 x 4
// outer product: 16 multiply-adds for 2 shared reads (rung 2 did 1 for 2). The
// vec4 arithmetic maps onto the GPU's (or lavapipe's SIMD) lanes. Each global
// element is read M/64 or N/64 times.

var<workgroup> ta: array<vec4<f32>, 256>; // [k][row / 4]: rows 4r..4r+3 at step k
var<workgroup> tb: array<vec4<f32>, 256>; // [k][col / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(local_invocation_id) l: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    let ab = a_base(wg.z);
    let bb = b_base(wg.z);
    var acc: array<vec4<f32>, 4>;
    for (var t = 0u; t < k; t = t + 16u) {
        // 1024 elements per tile, 4 per thread: element e = li + 256 * j.
        for (var j = 0u; j < 4u; j = j + 1u) {
            let e = li + 256u * j;
            // A tile: e -> (r, kk) with r in 0..64, kk in 0..16 (kk fastest).
            let r = e / 16u;
            let kk = e % 16u;
            let gr = row0 + r;
            let gk = t + kk;
            ta[kk * 16u + r / 4u][r % 4u] =
                select(0.0, a[ab + gr * info[5] + gk * info[6]], gr < m && gk < k);
            // B tile: e -> (kk, c) with c in 0..64 (c fastest).
            let kb = e / 64u;
            let c = e % 64u;
            let gc = col0 + c;
            let gkb = t + kb;
            tb[kb * 16u + c / 4u][c % 4u] =
                select(0.0, b[bb + gkb * info[8] + gc * info[9]], gkb < k && gc < n);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            let av = ta[kk * 16u + l.y];
            let bv = tb[kk * 16u + l.x];
            acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + l.y * 4u + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + l.x * 4u + j;
            if (row < m && col < n) {
                out[(wg.z * m + row) * n + col] = acc[i][j];
            }
        }
    }
}
