// Tiled attention with an online softmax: softmax(q k^T * scale + mask) v without
// ever storing the L x S score matrix.
//
// One workgroup of 64 threads per query row. Keys arrive in tiles of 64: thread t
// scores key t of the tile (a dot product over the head dim), the tile's max and
// the sum of its exp(s - m) meet in workgroup memory (trees of 6 rounds), and the
// running max `m` and denominator `l` are updated; a new max rescales what came
// before by exp(m_old - m_new), so the result is exact however the keys are split.
// Then each thread owns output channels t, t + 64, .. and adds the tile's
// probability-weighted value rows into its accumulators.
//
// Each invocation runs a few hundred loop iterations per tile, never a loop over
// all keys times the head dim (software rasterisers such as lavapipe cap the
// iterations of one invocation).
//
// info: [rows (= batch * lq), lq, lk, d, dv, scale, has_mask, causal];
// q, k, v, mask contiguous.

@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

// Max (op 0) or sum (op 1) of the 64 threads' values.
fn combine(lid: u32, x: f32, op: u32) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    var s = 32u;
    while (s > 0u) {
        if (lid < s) {
            if (op == 0u) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let rows = info[0];
    let lq = info[1];
    let lk = info[2];
    let d = info[3];
    let dv = info[4];
    let scale = bitcast<f32>(info[5]);
    let flat = wid.y * nwg.x + wid.x;
    let qf = min(flat, rows - 1u);
    let b = qf / lq;
    let row = qf % lq;
    for (var c = lid; c < d; c = c + 64u) {
        qs[c] = q[qf * d + c];
    }
    workgroupBarrier();
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var m = -3.4028235e38;
    var l = 0.0;
    for (var s0 = 0u; s0 < lk; s0 = s0 + 64u) {
        let j = s0 + lid;
        let live = j < lk && !(info[7] == 1u && j > row);
        var s = -3.4028235e38;
        if (live) {
            var dot = 0.0;
            let kb = (b * lk + j) * d;
            for (var c = 0u; c < d; c = c + 1u) {
                dot = dot + qs[c] * k[kb + c];
            }
            s = dot * scale;
            if (info[6] == 1u) {
                s = s + mask[qf * lk + j];
            }
        }
        let m_new = max(m, combine(lid, s, 0u));
        let corr = exp(m - m_new);
        var p = 0.0;
        if (live) {
            p = exp(s - m_new);
        }
        ps[lid] = p;
        l = l * corr + combine(lid, p, 1u);
        let cnt = min(64u, lk - s0);
        for (var i = 0u; i < 4u; i = i + 1u) {
            let c = lid + 64u * i;
            if (c < dv) {
                var a = acc[i] * corr;
                for (var t = 0u; t < cnt; t = t + 1u) {
                    a = a + ps[t] * v[(b * lk + s0 + t) * dv + c];
                }
                acc[i] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if (flat < rows) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let c = lid + 64u * i;
            if (c < dv) {
                out[qf * dv + c] = acc[i] / l;
            }
        }
    }
}
