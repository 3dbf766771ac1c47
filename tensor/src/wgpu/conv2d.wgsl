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
// info: [m, n, k, groups, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, ow, has_bias, cg]

@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

// Element (kk, p) of the im2col matrix of sample n, group g.
fn im2col_at(n: u32, g: u32, kk: u32, p: u32) -> f32 {
    let kh = info[8];
    let kw = info[9];
    let c = kk / (kh * kw);
    let ky = (kk / kw) % kh;
    let kx = kk % kw;
    let oy = p / info[16];
    let ox = p % info[16];
    let iy = i32(oy * info[10] + ky * info[14]) - i32(info[12]);
    let ix = i32(ox * info[11] + kx * info[15]) - i32(info[13]);
    if (iy < 0 || ix < 0 || iy >= i32(info[5]) || ix >= i32(info[6])) {
        return 0.0;
    }
    let ch = (n * info[4] + g * info[18] + c);
    return x[(ch * info[5] + u32(iy)) * info[6] + u32(ix)];
}

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
            let c = e % 64u;
            let gc = col0 + c;
            let gkb = t + kb;
            var v = 0.0;
            if (gkb < k && gc < n) {
                v = im2col_at(sample, g, gkb, gc);
            }
            tb[kb * 16u + c / 4u][c % 4u] = v;
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
