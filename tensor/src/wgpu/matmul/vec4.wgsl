// Rung 5: rung 4 (64 x 64 x 16, unrolled) reading memory four floats at a time,
// and fetching the next tile while this one is multiplied.
//
// For row-major operands whose rows start on 16-byte boundaries (k and n multiples
// of 4), `a` and `b` are bound as arrays of vec4: a thread loads one vec4 of A
// (row li / 4, k quad li % 4) and one of B (k row li / 16, column quad li % 16)
// per tile, a quarter of rung 4's load instructions and index arithmetic. The
// loads for tile t + 1 are issued before the multiply-adds of tile t, so their
// latency hides behind the arithmetic (register prefetch).

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> ta: array<vec4<f32>, 256>; // [k][row / 4]
var<workgroup> tb: array<vec4<f32>, 256>; // [k][col / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(local_invocation_id) l: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let ars4 = info[5] / 4u;
    let bks4 = info[8] / 4u;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let ra = li / 4u;
    let qa = li % 4u;
    let rb = li / 16u;
    let qb = li % 16u;
    let a_ok = row0 + ra < m;
    let b_ok = col0 + 4u * qb < n;
    let a_at = a_base(wg.z) / 4u + min(row0 + ra, m - 1u) * ars4 + qa;
    let b_at = b_base(wg.z) / 4u + (col0 / 4u + qb);
{ACC}
    var pa = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    if (a_ok && 4u * qa < k) { pa = a[a_at]; }
    if (b_ok && rb < k) { pb = b[b_at + rb * bks4]; }
    for (var t = 0u; t < k; t = t + BK) {
        ta[(4u * qa) * 16u + ra / 4u][ra % 4u] = pa.x;
        ta[(4u * qa + 1u) * 16u + ra / 4u][ra % 4u] = pa.y;
        ta[(4u * qa + 2u) * 16u + ra / 4u][ra % 4u] = pa.z;
        ta[(4u * qa + 3u) * 16u + ra / 4u][ra % 4u] = pa.w;
        tb[rb * 16u + qb] = pb;
        workgroupBarrier();
        let tn = t + BK;
        pa = vec4<f32>(0.0);
        pb = vec4<f32>(0.0);
        if (a_ok && tn + 4u * qa < k) { pa = a[a_at + tn / 4u]; }
        if (b_ok && tn + rb < k) { pb = b[b_at + (tn + rb) * bks4]; }
{KLOOP}
        workgroupBarrier();
    }
{STORES}
}
