//! The wgpu layers against the CPU: conv2d (stride, padding, dilation, groups,
//! odd sizes), group norm (and its SiLU fusion), layer norm, attention (mask,
//! causal, head dims, lengths off the tile), upsample, pad, cat, index_select and
//! embedding, tensors split into chunks (a context with a forced small binding
//! limit), and errors. Tolerance 1e-4. Without an adapter each test prints
//! "skipped: no wgpu adapter" and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpu::{assert_close, gpu, same_layout, to};
use tensor::wgpu::{ContextOptions, WgpuDevice};
use tensor::{Device, Tensor};

const TOL: f32 = 1e-4;

fn rand(dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(common::values(n, seed), dims.to_vec()).unwrap()
}

/// (n, c, h, w, o, k, stride, padding, dilation, groups): strides, padding,
/// dilation, groups (2 and depthwise), 1x1, more than 64 channels, a kernel wider
/// than its stride, batch 1 and 2.
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const CONV_CASES: [ConvCase; 9] = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1, 1),
    (2, 3, 7, 9, 5, 3, 1, 1, 1, 1),
    (1, 4, 8, 8, 6, 3, 2, 1, 1, 2),
    (2, 8, 11, 13, 8, 1, 1, 0, 1, 1),
    (1, 6, 9, 9, 4, 3, 1, 2, 2, 1),
    (1, 4, 6, 6, 4, 3, 1, 1, 1, 4),
    (2, 4, 6, 7, 4, 3, 2, 1, 1, 4),
    (1, 70, 9, 10, 67, 3, 1, 1, 1, 1),
    (1, 3, 16, 16, 2, 4, 3, 0, 1, 1),
];

#[test]
fn conv2d_matches_cpu() {
    let Some(d) = gpu("conv2d_matches_cpu") else {
        return;
    };
    let cases = CONV_CASES;
    for (i, &(n, c, h, w, o, k, s, p, dl, g)) in cases.iter().enumerate() {
        let x = rand(&[n, c, h, w], i as u64);
        let wt = rand(&[o, c / g, k, k], 100 + i as u64);
        let b = rand(&[o], 200 + i as u64);
        let want = x
            .conv2d(&wt, Some(&b), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        let got = to(&d, &x)
            .conv2d(&to(&d, &wt), Some(&to(&d, &b)), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        assert_close(&format!("conv case {i}"), &got, &want, TOL);
        let no_bias = x.conv2d(&wt, None, (s, s), (p, p), (dl, dl), g).unwrap();
        let got = to(&d, &x)
            .conv2d(&wt, None, (s, s), (p, p), (dl, dl), g)
            .unwrap();
        assert_close(&format!("conv case {i} without bias"), &got, &no_bias, TOL);
    }
    // A permuted (non-contiguous) input and an unbatched one.
    let x = rand(&[5, 5, 3, 2], 7).permute(&[3, 2, 0, 1]).unwrap();
    let wt = rand(&[4, 3, 3, 3], 8);
    let want = x.conv2d(&wt, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    let got = same_layout(&d, &x).conv2d(&to(&d, &wt), None, (1, 1), (1, 1), (1, 1), 1);
    assert_close("permuted input", &got.unwrap(), &want, TOL);
    let x3 = rand(&[3, 6, 6], 9);
    let want = x3.conv2d(&wt, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
    let got = to(&d, &x3).conv2d(&to(&d, &wt), None, (1, 1), (0, 0), (1, 1), 1);
    assert_close("unbatched", &got.unwrap(), &want, TOL);
}

#[test]
fn norms_match_cpu() {
    let Some(d) = gpu("norms_match_cpu") else {
        return;
    };
    for (i, dims) in [
        vec![2, 6, 5, 7],
        vec![1, 32, 16, 16],
        vec![3, 4, 1],
        vec![2, 64, 300],
    ]
    .into_iter()
    .enumerate()
    {
        let x = rand(&dims, i as u64).affine(3.0, 1.0).unwrap();
        let c = dims[1];
        let (w, b) = (rand(&[c], 50), rand(&[c], 51));
        let groups = if c % 32 == 0 { 32 } else { 2 };
        let g = to(&d, &x);
        let what = format!("group_norm {dims:?}");
        let want = x.group_norm(groups, Some(&w), Some(&b), 1e-5).unwrap();
        assert_close(
            &what,
            &g.group_norm(groups, Some(&w), Some(&b), 1e-5).unwrap(),
            &want,
            TOL,
        );
        let want = x.group_norm_silu(groups, Some(&w), Some(&b), 1e-6).unwrap();
        let got = g
            .group_norm_silu(groups, Some(&to(&d, &w)), Some(&b), 1e-6)
            .unwrap();
        assert_close(&format!("{what} + silu"), &got, &want, TOL);
        let want = x.group_norm(groups, None, None, 1e-5).unwrap();
        assert_close(
            &what,
            &g.group_norm(groups, None, None, 1e-5).unwrap(),
            &want,
            TOL,
        );
        let last = *dims.last().unwrap();
        let (lw, lb) = (rand(&[last], 52), rand(&[last], 53));
        let want = x.layer_norm(&[last], Some(&lw), Some(&lb), 1e-5).unwrap();
        let got = g.layer_norm(&[last], Some(&lw), Some(&lb), 1e-5).unwrap();
        assert_close(&format!("layer_norm {dims:?}"), &got, &want, TOL);
        let want = x.layer_norm(&dims[1..], None, None, 1e-5).unwrap();
        let got = g.layer_norm(&dims[1..], None, None, 1e-5).unwrap();
        assert_close(&format!("layer_norm all {dims:?}"), &got, &want, TOL);
    }
}

/// Inputs that start inside their buffer (a narrowed view: contiguous, with an
/// offset) reach the kernels that index buffers directly.
#[test]
fn offset_views_match_cpu() {
    let Some(d) = gpu("offset_views_match_cpu") else {
        return;
    };
    let big = rand(&[3, 6, 5, 7], 77);
    let x = big.narrow(0, 1, 2).unwrap();
    assert!(x.is_contiguous() && x.layout().offset() > 0);
    let g = same_layout(&d, &x);
    let want = x.group_norm(2, None, None, 1e-5).unwrap();
    assert_close(
        "group_norm",
        &g.group_norm(2, None, None, 1e-5).unwrap(),
        &want,
        TOL,
    );
    let want = x.layer_norm(&[7], None, None, 1e-5).unwrap();
    assert_close(
        "layer_norm",
        &g.layer_norm(&[7], None, None, 1e-5).unwrap(),
        &want,
        TOL,
    );
    assert_close(
        "softmax",
        &g.softmax(1).unwrap(),
        &x.softmax(1).unwrap(),
        TOL,
    );
    let up = x.upsample_nearest2d(10, 14).unwrap();
    assert_close("upsample", &g.upsample_nearest2d(10, 14).unwrap(), &up, 0.0);
    let w = rand(&[4, 6, 3, 3], 78);
    let want = x.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    let got = g.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_close("conv2d", &got, &want, TOL);
    let q = big.narrow(0, 1, 1).unwrap();
    let gq = same_layout(&d, &q);
    let want = q
        .scaled_dot_product_attention(&q, &q, None, None, false)
        .unwrap();
    let got = gq
        .scaled_dot_product_attention(&gq, &gq, None, None, false)
        .unwrap();
    assert_close("attention", &got, &want, TOL);
}

#[test]
fn attention_matches_cpu() {
    let Some(d) = gpu("attention_matches_cpu") else {
        return;
    };
    // (batch, heads, lq, lk, d, dv)
    for (i, &(b, h, lq, lk, hd, dv)) in [
        (1, 1, 1, 1, 1, 1),
        (2, 3, 5, 7, 8, 8),
        (1, 2, 65, 130, 40, 40),
        (2, 1, 77, 77, 64, 64),
        (1, 1, 9, 300, 160, 160),
        (1, 2, 70, 20, 16, 24),
    ]
    .iter()
    .enumerate()
    {
        let s = i as u64 * 10;
        let q = rand(&[b, h, lq, hd], s);
        let k = rand(&[b, h, lk, hd], s + 1);
        let v = rand(&[b, h, lk, dv], s + 2);
        let (gq, gk, gv) = (to(&d, &q), to(&d, &k), to(&d, &v));
        let what = format!("attention {:?}", (b, h, lq, lk, hd, dv));
        let want = q
            .scaled_dot_product_attention(&k, &v, None, None, false)
            .unwrap();
        let got = gq
            .scaled_dot_product_attention(&gk, &gv, None, None, false)
            .unwrap();
        assert_close(&what, &got, &want, TOL);
        let mask = rand(&[lq, lk], s + 3).mul_scalar(4.0).unwrap();
        let want = q
            .scaled_dot_product_attention(&k, &v, Some(&mask), Some(0.3), false)
            .unwrap();
        let got = gq
            .scaled_dot_product_attention(&gk, &gv, Some(&mask), Some(0.3), false)
            .unwrap();
        assert_close(&format!("{what} masked"), &got, &want, TOL);
        if lq <= lk {
            let want = q
                .scaled_dot_product_attention(&k, &v, None, None, true)
                .unwrap();
            let got = gq
                .scaled_dot_product_attention(&gk, &gv, None, None, true)
                .unwrap();
            assert_close(&format!("{what} causal"), &got, &want, TOL);
        }
    }
    // Transposed heads, as the models make them: (B, L, H, D) -> (B, H, L, D).
    let q = rand(&[2, 10, 4, 8], 99).permute(&[0, 2, 1, 3]).unwrap();
    let want = q
        .scaled_dot_product_attention(&q, &q, None, None, false)
        .unwrap();
    let gq = same_layout(&d, &q);
    let got = gq
        .scaled_dot_product_attention(&gq, &gq, None, None, false)
        .unwrap();
    assert_close("permuted heads", &got, &want, TOL);
}

#[test]
fn data_movement_matches_cpu() {
    let Some(d) = gpu("data_movement_matches_cpu") else {
        return;
    };
    let x = rand(&[2, 3, 5, 7], 1);
    let g = to(&d, &x);
    for (oh, ow) in [(10, 14), (5, 7), (3, 4), (11, 20)] {
        let what = format!("upsample to {oh}x{ow}");
        let want = x.upsample_nearest2d(oh, ow).unwrap();
        assert_close(&what, &g.upsample_nearest2d(oh, ow).unwrap(), &want, 0.0);
    }
    let pads = [(0, 1), (2, 0)];
    assert_close(
        "pad",
        &g.pad(&pads, -2.0).unwrap(),
        &x.pad(&pads, -2.0).unwrap(),
        0.0,
    );
    assert_close(
        "pad 0",
        &g.pad(&[(1, 1)], 0.0).unwrap(),
        &x.pad(&[(1, 1)], 0.0).unwrap(),
        0.0,
    );
    let y = rand(&[2, 4, 5, 7], 2);
    for dim in [1isize, -1, 0] {
        let other = if dim == 1 { y.clone() } else { x.clone() };
        let want = Tensor::cat(&[&x, &other, &x], dim).unwrap();
        let got = Tensor::cat(&[&g, &to(&d, &other), &x.t().unwrap().t().unwrap()], dim).unwrap();
        assert_close(&format!("cat dim {dim}"), &got, &want, 0.0);
    }
    let idx = [4, 0, 4, 2];
    for dim in [0isize, 2, 3] {
        let n = x.dims()[dim as usize];
        let ids: Vec<usize> = idx.iter().map(|i| i % n).collect();
        let want = x.index_select(dim, &ids).unwrap();
        assert_close(
            &format!("index_select {dim}"),
            &g.index_select(dim, &ids).unwrap(),
            &want,
            0.0,
        );
    }
    let table = rand(&[11, 6], 3);
    let ids = [3, 3, 10, 0, 7, 1];
    let want = Tensor::embedding_with_shape(&table, &ids, &[2, 3]).unwrap();
    let got = Tensor::embedding_with_shape(&to(&d, &table), &ids, &[2, 3]).unwrap();
    assert_close("embedding", &got, &want, 0.0);
}

/// A context that binds at most 64 bytes (16 floats): tensors split into chunks.
/// Upload, download and embedding rows that straddle chunks come back exact.
#[test]
fn tensors_bigger_than_a_binding_are_split() {
    if gpu("tensors_bigger_than_a_binding_are_split").is_none() {
        return;
    }
    let small = WgpuDevice::with_options(&ContextOptions {
        max_binding_bytes: Some(64),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(small.context().max_binding_bytes(), 64);
    let d = Device::Wgpu(small);
    let table = rand(&[13, 7], 4); // 91 floats: 6 chunks, rows cross chunk edges
    let g = to(&d, &table);
    match g.storage().as_ref() {
        tensor::Storage::Wgpu(b) => assert_eq!(b.chunks().len(), 6),
        _ => panic!("not on wgpu"),
    }
    assert_eq!(g.to_vec().unwrap(), table.to_vec().unwrap());
    assert_eq!(
        g.narrow(0, 3, 5).unwrap().to_vec().unwrap(),
        table.narrow(0, 3, 5).unwrap().to_vec().unwrap()
    );
    let ids = [12, 0, 2, 2, 9, 5, 11];
    let want = Tensor::embedding(&table, &ids).unwrap();
    let got = Tensor::embedding(&g, &ids).unwrap();
    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());
    // A kernel that binds whole buffers says why it cannot run.
    let e = g.exp().unwrap_err().to_string();
    assert!(e.contains("largest storage binding"), "{e}");
    // Small results still work on that context.
    let small = Tensor::from_slice(&[0.0, 1.0, -2.0], [3]).unwrap();
    assert_close(
        "exp on the small context",
        &to(&d, &small).exp().unwrap(),
        &small.exp().unwrap(),
        TOL,
    );
}

#[test]
fn errors_are_reported_not_panicked() {
    let Some(d) = gpu("errors_are_reported_not_panicked") else {
        return;
    };
    let g = to(&d, &Tensor::ones([2, 3]));
    // Shape errors come from the same checks as on the CPU.
    assert!(g.matmul(&to(&d, &Tensor::ones([2, 3]))).is_err());
    assert!(g.add(&Tensor::ones([4])).is_err());
    // Tensors from two separate GPU contexts do not mix silently.
    let other = Device::Wgpu(WgpuDevice::with_options(&ContextOptions::default()).unwrap());
    let e = g
        .add(&to(&other, &Tensor::ones([2, 3])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("two different GPU contexts"), "{e}");
    // The CPU-only reference twins (every op has a GPU kernel now) say where the
    // tensor lives and how to move it.
    let e = to(&d, &Tensor::ones([1, 4, 2, 2]))
        .group_norm_naive(2, None, None, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lives on wgpu") && e.contains("to_device"),
        "{e}"
    );
    // add_bias_act is composed from add and the activation on the GPU.
    let (x, b) = (rand(&[3, 5], 60), rand(&[5], 61));
    let want = x
        .add_bias_act(&b, Some(tensor::ops::unary::UnaryOp::Gelu))
        .unwrap();
    let got = to(&d, &x).add_bias_act(&b, Some(tensor::ops::unary::UnaryOp::Gelu));
    assert_close("add_bias_act", &got.unwrap(), &want, TOL);
    // A head dim wider than the kernel holds (the VAE's 512) takes the composite
    // path, with a mask and causal.
    let (q, k, m) = (
        rand(&[1, 2, 5, 300], 62),
        rand(&[1, 2, 7, 300], 63),
        rand(&[5, 7], 64),
    );
    let want = q
        .scaled_dot_product_attention(&k, &k, Some(&m), None, true)
        .unwrap();
    let got =
        to(&d, &q).scaled_dot_product_attention(&to(&d, &k), &to(&d, &k), Some(&m), None, true);
    assert_close("attention, head dim 300", &got.unwrap(), &want, TOL);
}

/// The caching allocator: a dropped tensor's buffer goes to the pool, the next
/// buffer of that size takes it and still reads as zeros; past the cap nothing
/// is kept.
#[test]
fn freed_buffers_are_reused_and_read_as_zeros() {
    if gpu("freed_buffers_are_reused_and_read_as_zeros").is_none() {
        return;
    }
    let w = WgpuDevice::with_options(&ContextOptions::default()).unwrap();
    let d = Device::Wgpu(w.clone());
    let x = to(&d, &rand(&[1000], 70)).exp().unwrap(); // two buffers of 4000 bytes
    assert_eq!(w.context().pooled_bytes(), 4000, "the upload was freed");
    drop(x);
    assert_eq!(w.context().pooled_bytes(), 8000);
    let z = tensor::wgpu::layers::full(&w, vec![1000], 0.0).unwrap();
    assert_eq!(w.context().pooled_bytes(), 4000, "one buffer was reused");
    assert!(z.to_vec().unwrap().iter().all(|&v| v == 0.0));
    let capped = WgpuDevice::with_options(&ContextOptions {
        pool_bytes: Some(100),
        ..Default::default()
    })
    .unwrap();
    drop(to(&Device::Wgpu(capped.clone()), &rand(&[1000], 71)));
    assert_eq!(capped.context().pooled_bytes(), 0);
}

/// conv2d's gradients on the GPU (im2col + matmul, matmul + col2im) against the
/// CPU's: strides, padding, dilation, groups, 1x1 and a kernel wider than the
/// stride, batch 1 and 2.
#[test]
fn conv2d_backward_matches_cpu() {
    let Some(d) = gpu("conv2d_backward_matches_cpu") else {
        return;
    };
    let cases = CONV_CASES;
    for (i, &(n, c, h, w, o, k, s, p, dl, g)) in cases.iter().enumerate() {
        let x = rand(&[n, c, h, w], 300 + i as u64);
        let wt = rand(&[o, c / g, k, k], 400 + i as u64);
        let y = x.conv2d(&wt, None, (s, s), (p, p), (dl, dl), g).unwrap();
        let dy = rand(y.dims(), 500 + i as u64);
        let what = format!("conv backward case {i}");
        let want = dy
            .conv2d_backward_input(&wt, (h, w), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        let got = to(&d, &dy)
            .conv2d_backward_input(&to(&d, &wt), (h, w), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        assert!(got.is_gpu());
        assert_close(&format!("{what}: dx"), &got, &want, TOL);
        let want = x
            .conv2d_backward_weight(&dy, (k, k), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        let got = same_layout(&d, &x)
            .conv2d_backward_weight(&to(&d, &dy), (k, k), (s, s), (p, p), (dl, dl), g)
            .unwrap();
        assert_close(&format!("{what}: dW"), &got, &want, TOL);
    }
}
