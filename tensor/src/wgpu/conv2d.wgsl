// conv2d as an implicit GEMM: the matmul ladder's rung 3 (register.wgsl) with the
// B tile gathered straight from the image.
//
// For sample n and group g the convolution is a matmul: A = the weights as an
// (O/g) x (C/g * kh * kw) matrix, B = the im2col matrix, (C/g * kh * kw) x (H' * W'),
// whose column p holds the input patch under output pixel p. im2col would write B
// to memory (9x the image for a 3x3 kernel); here each thread computes the
// address of the B element it loads, (c, ky, kx) x (oy, ox) -> x[c, iy, ix], and
// loads 0 where the patch hangs over the padding. Bias is added at the end.
//
// No division in the loop: a thread's output pixel p (so oy, ox) is the same on
// every tile, and the row kk = (c, ky, kx) of the im2col matrix is looked up in a
// table the host writes after the sizes: `c * H * W + ky * dh * W + kx * dw` and
// `ky * dh | kx * dw << 16`.
//
// info: [m, n, k, groups, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, ow, has_bias, cg,
//        then per kk in 0..k: offset, packed (ky * dh, kx * dw)]

@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(local_invocation_id) l: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let groups = info[3];
    let sample = wg.z / groups;
    let g = wg.z % groups;
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    let wbase = g * m * k;
    let hh = i32(info[5]);
    let ww = i32(info[6]);
    // This thread's B-tile column (the same for all four loads and every tile).
    let gc = col0 + li % 64u;
    let oy = i32((gc / info[16]) * info[10]) - i32(info[12]);
    let ox = i32((gc % info[16]) * info[11]) - i32(info[13]);
    let xbase = i32((sample * info[4] + g * info[18]) * info[5] * info[6]) + oy * ww + ox;
    var acc: array<vec4<f32>, 4>;
    for (var t = 0u; t < k; t = t + 16u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            let e = li + 256u * j;
            let r = e / 16u;
            let kk = e % 16u;
            let gr = row0 + r;
            let gk = t + kk;
            ta[kk * 16u + r / 4u][r % 4u] = select(0.0, w[wbase + gr * k + gk], gr < m && gk < k);
            let kb = e / 64u;
            let gkb = t + kb;
            var v = 0.0;
            if (gkb < k && gc < n) {
                let packed = info[20u + 2u * gkb];
                let iy = oy + i32(packed & 0xffffu);
                let ix = ox + i32(packed >> 16u);
                if (iy >= 0 && ix >= 0 && iy < hh && ix < ww) {
                    v = x[u32(xbase + i32(info[19u + 2u * gkb]))];
                }
            }
            tb[kb * 16u + li % 64u / 4u][li % 4u] = v;
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
                let o = g * m + row;
                var y = acc[i][j];
                if (info[17] == 1u) {
                    y = y + bias[o];
                }
                out[(sample * info[7] + o) * n + col] = y;
            }
        }
    }
}
