//! Mixed residency: an op with any operand on the GPU runs there, whichever operand
//! it is (training meets this: a CPU zeros buffer gathers a GPU gradient, a CPU
//! batch meets GPU weights). Each op with one operand on the GPU and the rest on
//! the CPU gives the all-CPU result (1e-4, relative above 1) on the GPU. Without
//! an adapter each test prints "skipped: no wgpu adapter" and returns. Saving GPU
//! tensors to safetensors downloads them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpu::{assert_close, gpu, to};
use common::{make, Kind};
use tensor::Tensor;

const TOL: f32 = 1e-4;

#[test]
fn any_gpu_operand_takes_the_op_to_the_gpu() {
    let Some(dev) = gpu("any_gpu_operand_takes_the_op_to_the_gpu") else {
        return;
    };
    let x = make(&[2, 6, 3, 4], Kind::Contiguous, 1);
    let (w, b) = (
        make(&[6], Kind::Contiguous, 2),
        make(&[6], Kind::Contiguous, 3),
    );
    let rows = make(&[5, 4], Kind::Contiguous, 4);
    let zeros = Tensor::zeros([3, 4]);

    // index_add: the destination on the CPU, the rows on the GPU (an embedding's
    // gradient) and the other way round.
    let want = zeros.index_add(0, &[2, 0, 2, 1, 0], &rows).unwrap();
    let got = zeros
        .index_add(0, &[2, 0, 2, 1, 0], &to(&dev, &rows))
        .unwrap();
    assert_close("index_add, GPU source", &got, &want, TOL);
    let got = to(&dev, &zeros)
        .index_add(0, &[2, 0, 2, 1, 0], &rows)
        .unwrap();
    assert_close("index_add, GPU destination", &got, &want, TOL);

    // Norms with the input on the CPU and an affine parameter on the GPU.
    let want = x.group_norm(3, Some(&w), Some(&b), 1e-5).unwrap();
    let got = x
        .group_norm(3, Some(&to(&dev, &w)), Some(&b), 1e-5)
        .unwrap();
    assert_close("group_norm, GPU weight", &got, &want, TOL);
    let got = x
        .group_norm(3, Some(&w), Some(&to(&dev, &b)), 1e-5)
        .unwrap();
    assert_close("group_norm, GPU bias", &got, &want, TOL);
    let t = x.reshape([18, 4, 2]).unwrap();
    let (lw, lb) = (
        make(&[4, 2], Kind::Contiguous, 5),
        make(&[4, 2], Kind::Contiguous, 6),
    );
    let want = t.layer_norm(&[4, 2], Some(&lw), Some(&lb), 1e-5).unwrap();
    let got = t
        .layer_norm(&[4, 2], Some(&to(&dev, &lw)), Some(&lb), 1e-5)
        .unwrap();
    assert_close("layer_norm, GPU weight", &got, &want, TOL);

    // Products and convolutions with the weight on the GPU.
    let a = make(&[7, 4], Kind::Permuted, 7);
    let want = a.matmul(&rows.t().unwrap()).unwrap();
    let got = a.matmul(&to(&dev, &rows).t().unwrap()).unwrap();
    assert_close("matmul, GPU rhs", &got, &want, TOL);
    let k = make(&[4, 6, 3, 3], Kind::Contiguous, 8);
    let want = x.conv2d(&k, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    let got = x
        .conv2d(&to(&dev, &k), None, (1, 1), (1, 1), (1, 1), 1)
        .unwrap();
    assert_close("conv2d, GPU weight", &got, &want, TOL);

    // Elementwise, in either position.
    let want = x.mul(&w.reshape([6, 1, 1]).unwrap()).unwrap();
    let got = x.mul(&to(&dev, &w).reshape([6, 1, 1]).unwrap()).unwrap();
    assert_close("mul, GPU rhs", &got, &want, TOL);
}

/// Saving tensors that live on the GPU downloads them (a model trained there is
/// written like any other).
#[test]
fn gpu_tensors_save_to_safetensors() {
    let Some(dev) = gpu("gpu_tensors_save_to_safetensors") else {
        return;
    };
    let a = make(&[3, 5], Kind::Permuted, 9);
    let path = std::env::temp_dir().join(format!("wgpu-save-{}.safetensors", std::process::id()));
    let g = to(&dev, &a);
    tensor::io::safetensors::save(&path, [("a", &g), ("cpu", &a)], tensor::io::DType::F32).unwrap();
    let file = tensor::io::safetensors::SafeTensorsFile::open(&path).unwrap();
    assert_eq!(
        file.get("a").unwrap().to_vec().unwrap(),
        a.to_vec().unwrap()
    );
    assert_eq!(
        file.get("cpu").unwrap().to_vec().unwrap(),
        a.to_vec().unwrap()
    );
    std::fs::remove_file(&path).unwrap();
}
