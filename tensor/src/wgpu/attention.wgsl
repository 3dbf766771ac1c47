// Tiled attention with an online softmax (flash attention's idea, one query per
// thread): softmax(q k^T * scale + mask) v without ever storing the L x S scores.
//
// A workgroup takes 64 queries of one batch item. Keys and values arrive in tiles
// of `kt` rows, staged in workgroup memory by all 64 threads together. Each thread
// keeps, for its query, the running max `m`, the running denominator `l` and the
// running weighted sum `acc` of value rows. A new score s rescales what came
// before by exp(m_old - m_new), so the sum is exact however the keys are split.
//
// info: [lq, lk, d, dv, scale, has_mask, causal, kt]; q, k, v, mask contiguous.

@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;

var<workgroup> ktile: array<f32, 2048>;
var<workgroup> vtile: array<f32, 2048>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lq = info[0];
    let lk = info[1];
    let d = info[2];
    let dv = info[3];
    let scale = bitcast<f32>(info[4]);
    let kt = info[7];
    let b = wg.y;
    let row = wg.x * 64u + lid;
    let valid = row < lq;
    let qrow = min(row, lq - 1u);
    var qr: array<f32, 256>;
    for (var c = 0u; c < d; c = c + 1u) {
        qr[c] = q[(b * lq + qrow) * d + c];
    }
    var acc: array<f32, 256>;
    var m = -3.4028235e38;
    var l = 0.0;
    for (var s0 = 0u; s0 < lk; s0 = s0 + kt) {
        let cnt = min(kt, lk - s0);
        for (var e = lid; e < cnt * d; e = e + 64u) {
            ktile[e] = k[(b * lk + s0) * d + e];
        }
        for (var e = lid; e < cnt * dv; e = e + 64u) {
            vtile[e] = v[(b * lk + s0) * dv + e];
        }
        workgroupBarrier();
        if (valid) {
            for (var j = 0u; j < cnt; j = j + 1u) {
                if (info[6] == 1u && s0 + j > row) {
                    break;
                }
                var s = 0.0;
                for (var c = 0u; c < d; c = c + 1u) {
                    s = s + qr[c] * ktile[j * d + c];
                }
                s = s * scale;
                if (info[5] == 1u) {
                    s = s + mask[(b * lq + row) * lk + s0 + j];
                }
                let m_new = max(m, s);
                let corr = exp(m - m_new);
                let p = exp(s - m_new);
                l = l * corr + p;
                for (var c = 0u; c < dv; c = c + 1u) {
                    acc[c] = acc[c] * corr + p * vtile[j * dv + c];
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var c = 0u; c < dv; c = c + 1u) {
            out[(b * lq + row) * dv + c] = acc[c] / l;
        }
    }
}
