//! The layer ops against PyTorch 2.x golden values in `fixtures/ops_layers.safetensors`
//! (made by `scripts/gen_fixtures.py --only ops_layers`; the hyper-parameters below repeat the
//! script's, case by case).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::assert_close;
use safetensors::{Dtype, SafeTensors};
use tensor::ops::resize::PadMode;
use tensor::Tensor;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/ops_layers.safetensors"
);

struct Golden(Vec<u8>);

impl Golden {
    fn load() -> Self {
        Golden(std::fs::read(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}")))
    }

    fn get(&self, name: &str) -> Tensor {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_vec(data, view.shape().to_vec()).unwrap()
    }

    /// Compare `got` with `NAME.y`, shape and values.
    fn check(&self, name: &str, got: Tensor, tol: f64) {
        let want = self.get(&format!("{name}.y"));
        assert_eq!(got.dims(), want.dims(), "{name}");
        assert_close(
            &got.to_vec().unwrap(),
            &want.to_vec().unwrap(),
            tol,
            tol,
            name,
        );
    }
}

#[test]
fn conv2d_matches_torch() {
    let g = Golden::load();
    let (x, w, b) = (g.get("conv_a.x"), g.get("conv_a.w"), g.get("conv_a.b"));
    for y in [
        x.conv2d(&w, Some(&b), (2, 1), (1, 2), (1, 2), 2).unwrap(),
        x.conv2d_naive(&w, Some(&b), (2, 1), (1, 2), (1, 2), 2)
            .unwrap(),
    ] {
        g.check("conv_a", y, 1e-5);
    }
    let (x, w) = (g.get("conv_b.x"), g.get("conv_b.w"));
    g.check(
        "conv_b",
        x.conv2d(&w, None, (2, 2), (1, 1), (1, 1), 4).unwrap(),
        1e-5,
    );
    let (x, w, b) = (g.get("conv_c.x"), g.get("conv_c.w"), g.get("conv_c.b"));
    g.check(
        "conv_c",
        x.conv2d(&w, Some(&b), (1, 1), (0, 0), (1, 1), 1).unwrap(),
        1e-5,
    );
    let (x, w, b) = (g.get("conv_d.x"), g.get("conv_d.w"), g.get("conv_d.b"));
    g.check(
        "conv_d",
        x.conv2d(&w, Some(&b), (1, 1), (1, 1), (1, 1), 1).unwrap(),
        1e-4,
    );
}

#[test]
fn norms_match_torch() {
    let g = Golden::load();
    let (x, w, b) = (
        g.get("group_norm.x"),
        g.get("group_norm.w"),
        g.get("group_norm.b"),
    );
    g.check(
        "group_norm",
        x.group_norm(3, Some(&w), Some(&b), 1e-6).unwrap(),
        1e-5,
    );
    let (x, w, b) = (
        g.get("layer_norm.x"),
        g.get("layer_norm.w"),
        g.get("layer_norm.b"),
    );
    g.check(
        "layer_norm",
        x.layer_norm(&[10], Some(&w), Some(&b), 1e-5).unwrap(),
        1e-5,
    );
}

#[test]
fn resize_and_pool_match_torch() {
    let g = Golden::load();
    let x = g.get("upsample_size.x");
    g.check("upsample_size", x.upsample_nearest2d(7, 11).unwrap(), 0.0);
    g.check("upsample_down", x.upsample_nearest2d(2, 3).unwrap(), 0.0);
    g.check("upsample_x2", x.upsample_nearest2d_scale(2).unwrap(), 0.0);
    let x = g.get("avg_pool.x");
    g.check(
        "avg_pool",
        x.avg_pool2d((3, 3), (2, 2), (1, 1)).unwrap(),
        1e-6,
    );
    g.check(
        "max_pool",
        x.max_pool2d((3, 3), (2, 2), (1, 1)).unwrap(),
        0.0,
    );
    let x = g.get("pad_reflect.x");
    let pads = [(2, 1), (1, 3)];
    g.check(
        "pad_reflect",
        x.pad_with(&pads, PadMode::Reflect).unwrap(),
        0.0,
    );
    g.check(
        "pad_replicate",
        x.pad_with(&pads, PadMode::Replicate).unwrap(),
        0.0,
    );
    g.check("pad_constant", x.pad(&[(0, 1), (0, 1)], 0.25).unwrap(), 0.0);
}

#[test]
fn gather_matches_torch() {
    let g = Golden::load();
    let (x, index) = (g.get("gather.x"), g.get("gather.index"));
    g.check("gather", x.gather(1, &index).unwrap(), 0.0);
}
