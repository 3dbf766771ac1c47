// Attention for small heads, FlashAttention's tiling: a workgroup of 64 threads
// takes 64 queries (one per thread, its row of q and its output in registers) and
// walks the keys in tiles of TK, staging each tile of K and V in workgroup memory
// once for all 64 queries. `attention.wgsl` gives every query its own workgroup
// and so reads all of K and V once per query; here once per 64 queries.
//
// Per tile a thread scores its query against the TK keys (dot products over the
// head dim, kept in workgroup memory `ps`), takes the tile's max, rescales its
// running denominator and output by exp(m_old - m_new) (the online softmax), then
// adds exp(s - m_new) * v for each key. D and DV (multiples of 4, at most 64) are
// constants filled in by `attention.rs`, which also unrolls the loops over the head
// dim (Q_LOAD, DOT, ACC_*), so q and the output stay in registers.
//
// info: [rows (= batch * lq), lq, lk, d, dv, scale, has_mask, causal];
// q, k, v, mask contiguous. Grid: (ceil(lq / 64), batch).

@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;

const D: u32 = {D}u;
const DV: u32 = {DV}u;
const TK: u32 = 32u;

var<workgroup> ks: array<vec4<f32>, {KS}>; // [key][c / 4]
var<workgroup> vs: array<vec4<f32>, {VS}>; // [key][c / 4]
var<workgroup> ps: array<f32, 2048>; // [key][thread]: scores of the tile

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lq = info[1];
    let lk = info[2];
    let scale = bitcast<f32>(info[5]);
    let has_mask = info[6] == 1u;
    let causal = info[7] == 1u;
    let b = wid.y;
    let qi = wid.x * 64u + lid;
    let live_q = qi < lq;
    let qrow = (b * lq + min(qi, lq - 1u)) * D;
{Q_LOAD}
{ACC_INIT}
    var m = -3.4028235e38;
    var l = 0.0;
    for (var s0 = 0u; s0 < lk; s0 = s0 + TK) {
        for (var e = lid; e < TK * D; e = e + 64u) {
            let j = s0 + e / D;
            ks[e / 4u][e % 4u] = select(0.0, k[(b * lk + min(j, lk - 1u)) * D + e % D], j < lk);
        }
        for (var e = lid; e < TK * DV; e = e + 64u) {
            let j = s0 + e / DV;
            vs[e / 4u][e % 4u] = select(0.0, v[(b * lk + min(j, lk - 1u)) * DV + e % DV], j < lk);
        }
        workgroupBarrier();
        var tmax = -3.4028235e38;
        for (var t = 0u; t < TK; t = t + 1u) {
            let j = s0 + t;
            var s = -3.4028235e38;
            if (j < lk && !(causal && j > qi)) {
                let kb = t * (D / 4u);
{DOT}
                s = dot_ * scale;
                if (has_mask) {
                    s = s + mask[(b * lq + min(qi, lq - 1u)) * lk + j];
                }
            }
            ps[t * 64u + lid] = s;
            tmax = max(tmax, s);
        }
        let m_new = max(m, tmax);
        let corr = exp(m - m_new);
        l = l * corr;
{ACC_SCALE}
        for (var t = 0u; t < TK; t = t + 1u) {
            let j = s0 + t;
            if (j < lk && !(causal && j > qi)) {
                let p = exp(ps[t * 64u + lid] - m_new);
                l = l + p;
                let vb = t * (DV / 4u);
{ACC_ADD}
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if (live_q) {
        let o = (b * lq + qi) * DV;
{STORE}
    }
}
