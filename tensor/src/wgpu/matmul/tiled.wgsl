// Rung 2: shared-memory tiles.
//
// A 16 x 16 workgroup computes a 16 x 16 block of C. It walks k in steps of 16:
// each thread copies one element of the A tile and one of the B tile into
// workgroup (shared) memory, all threads wait at a barrier, then each thread does
// 16 multiply-adds from the fast shared copies, and all wait again before the next
// tile overwrites them. Each global element is now read M/16 or N/16 times instead
// of M or N: 16x less memory traffic than rung 1 for the same arithmetic.
// Out-of-range threads still load (zeros) and reach every barrier: a barrier must
// be reached by the whole workgroup.

var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let row = wg.y * 16u + l.y;
    let col = wg.x * 16u + l.x;
    let ab = a_base(wg.z);
    let bb = b_base(wg.z);
    var acc = 0.0;
    for (var t = 0u; t < k; t = t + 16u) {
        let ka = t + l.x;
        let kb = t + l.y;
        ta[l.y][l.x] = select(0.0, a[ab + row * info[5] + ka * info[6]], row < m && ka < k);
        tb[l.y][l.x] = select(0.0, b[bb + kb * info[8] + col * info[9]], kb < k && col < n);
        workgroupBarrier();
        for (var i = 0u; i < 16u; i = i + 1u) {
            acc = acc + ta[l.y][i] * tb[i][l.x];
        }
        workgroupBarrier();
    }
    if (row < m && col < n) {
        out[(wg.z * m + row) * n + col] = acc;
    }
}
