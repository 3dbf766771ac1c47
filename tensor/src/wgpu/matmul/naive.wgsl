// Rung 1 of the GPU matmul ladder: one thread per output element.
//
// Thread (row, col) walks the shared dimension k and sums a[row, k] * b[k, col],
// exactly the triple loop of lessons/01-matmul with the two outer loops turned into
// the grid. Every thread reads a whole row of A and a whole column of B from global
// memory, so each input element is fetched M or N times: the kernel is bound by
// memory traffic, not arithmetic. Workgroups are 16 x 16 threads.

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let row = g.y;
    let col = g.x;
    if (row >= m || col >= n) {
        return;
    }
    let ao = a_base(g.z) + row * info[5];
    let bo = b_base(g.z) + col * info[9];
    var acc = 0.0;
    for (var i = 0u; i < k; i = i + 1u) {
        acc = acc + a[ao + i * info[6]] * b[bo + i * info[8]];
    }
    out[(g.z * m + row) * n + col] = acc;
}
