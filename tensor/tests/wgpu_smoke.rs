#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::gpu::*;
use tensor::Tensor;

#[test]
fn smoke() {
    let Some(d) = gpu("smoke") else { return };
    if let tensor::Device::Wgpu(w) = &d {
        println!("{:?}", w.context());
    }
    let a = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap();
    let g = to(&d, &a);
    assert_eq!(g.to_vec().unwrap(), a.to_vec().unwrap());
    assert_eq!(
        g.t().unwrap().to_vec().unwrap(),
        a.t().unwrap().to_vec().unwrap()
    );
    assert_close("exp", &g.exp().unwrap(), &a.exp().unwrap(), 1e-5);
    assert_close(
        "add",
        &g.add(&g.t().unwrap().t().unwrap()).unwrap(),
        &a.add(&a).unwrap(),
        0.0,
    );
    assert_close(
        "sum",
        &g.sum(&[1], false).unwrap(),
        &a.sum(&[1], false).unwrap(),
        1e-5,
    );
    assert_close(
        "softmax",
        &g.softmax(0).unwrap(),
        &a.softmax(0).unwrap(),
        1e-6,
    );
    let b = a.t().unwrap();
    assert_close(
        "matmul",
        &g.matmul(&to(&d, &b)).unwrap(),
        &a.matmul(&b).unwrap(),
        1e-5,
    );
}
