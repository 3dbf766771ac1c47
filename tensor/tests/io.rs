//! Safetensors, dtype conversion, PNG I/O and atomic writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "io/images.rs"]
mod images;

use std::borrow::Cow;
use std::path::Path;

use half::{bf16, f16};
use proptest::prelude::*;
use tensor::io::{
    decode_to_f32, encode_from_f32, load, round_through, save, write_atomic, DType, SafeTensorsFile,
};
use tensor::{Tensor, TensorError};

use common::Fill;

/// Deterministic values in [-4, 4) with a few specials mixed in.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut v = Fill::Uniform(4.0).values(n, seed);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 17 {
            3 => *x = 0.0,
            5 => *x = -0.0,
            7 => *x = 1e-30,    // f16 flushes to 0, bf16 keeps it
            11 => *x = 70000.0, // beyond f16's max: inf
            _ => {}
        }
    }
    v
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Files left in a directory (to check that no temp files remain).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn msg(e: TensorError) -> String {
    e.to_string()
}

// ---- dtype ------------------------------------------------------------------

#[test]
fn f32_bytes_round_trip_exactly_including_specials() {
    let mut v = values(100, 1);
    v.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 8.0,
        f32::MAX,
    ]);
    let bytes = encode_from_f32(&v, DType::F32).unwrap();
    assert_eq!(bytes.len(), 4 * v.len());
    assert_eq!(&bytes[..4], &v[0].to_le_bytes());
    let back = decode_to_f32(&bytes, DType::F32).unwrap();
    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&v));
    let nan = decode_to_f32(
        &encode_from_f32(&[f32::NAN], DType::F32).unwrap(),
        DType::F32,
    )
    .unwrap();
    assert!(nan[0].is_nan());
}

#[test]
fn half_types_round_to_nearest_even_like_the_half_crate_scalar_path() {
    let v = values(1000, 2);
    let f16_ref: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    let bf16_ref: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(round_through(&v, DType::F16).unwrap(), f16_ref);
    assert_eq!(round_through(&v, DType::BF16).unwrap(), bf16_ref);
    // Values checked against torch: x.half() / x.bfloat16() (exact dyadic values).
    let h = round_through(&[0.1, 70000.0], DType::F16).unwrap();
    assert_eq!((f64::from(h[0]), h[1]), (0.0999755859375, f32::INFINITY));
    let b = round_through(&[0.1], DType::BF16).unwrap();
    assert_eq!(f64::from(b[0]), 0.10009765625);
    assert!(round_through(&[1e-30], DType::BF16).unwrap()[0] > 0.0);
    // Ties to even: 1 + 2^-11 lies halfway between f16 1.0 and 1 + 2^-10.
    assert_eq!(
        round_through(&[1.0 + 2f32.powi(-11)], DType::F16).unwrap(),
        vec![1.0]
    );
    assert_eq!(
        round_through(&[1.0 + 3.0 * 2f32.powi(-11)], DType::F16).unwrap(),
        vec![1.0 + 2.0 * 2f32.powi(-10)]
    );
    // bf16 halfway between 1.0 and 1 + 2^-7.
    assert_eq!(
        round_through(&[1.0 + 2f32.powi(-8)], DType::BF16).unwrap(),
        vec![1.0]
    );
}

#[test]
fn misaligned_bytes_decode_like_aligned_ones() {
    let v = values(37, 3);
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let bytes = encode_from_f32(&v, dt).unwrap();
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(
            decode_to_f32(&shifted[1..], dt).unwrap(),
            decode_to_f32(&bytes, dt).unwrap(),
            "{dt}"
        );
    }
}

#[test]
fn integer_and_bool_dtypes_widen_to_f32() {
    let i64s: Vec<u8> = [0i64, 1, 76, -5, 1 << 40]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        decode_to_f32(&i64s, DType::I64).unwrap(),
        vec![0.0, 1.0, 76.0, -5.0, 1099511627776.0]
    );
    let i32s: Vec<u8> = [-7i32, 300].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(decode_to_f32(&i32s, DType::I32).unwrap(), vec![-7.0, 300.0]);
    assert_eq!(
        decode_to_f32(&[0, 1, 2], DType::Bool).unwrap(),
        vec![0.0, 1.0, 1.0]
    );
    assert_eq!(
        decode_to_f32(&[255, 1], DType::I8).unwrap(),
        vec![-1.0, 1.0]
    );
    assert_eq!(
        decode_to_f32(&[255, 1], DType::U8).unwrap(),
        vec![255.0, 1.0]
    );
    let f64s: Vec<u8> = [0.1f64, -2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        decode_to_f32(&f64s, DType::F64).unwrap(),
        vec![0.1f32, -2.0]
    );
}

#[test]
fn bad_dtype_conversions_are_errors() {
    let e = msg(decode_to_f32(&[1, 2, 3], DType::F16).unwrap_err());
    assert!(e.contains("3 bytes") && e.contains("F16"), "{e}");
    let e = msg(decode_to_f32(&[1], DType::F8E4M3).unwrap_err());
    assert!(e.contains("F8_E4M3"), "{e}");
    let e = msg(encode_from_f32(&[1.0], DType::I32).unwrap_err());
    assert!(e.contains("I32"), "{e}");
    for d in DType::ALL {
        assert_eq!(DType::from_safetensors(d.to_safetensors()), Some(d));
        assert_eq!(d.size_in_bytes(), d.to_safetensors().size());
    }
}

// ---- safetensors --------------------------------------------------------------

#[test]
fn save_and_load_round_trip_in_each_dtype_and_odd_shapes() {
    let dir = temp();
    let shapes: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![1],
        vec![7],
        vec![3, 5],
        vec![2, 0, 3],
        vec![2, 3, 5, 7],
    ];
    let tensors: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            (
                format!("t{i}.weight"),
                Tensor::from_vec(values(n, i as u64), s.clone()).unwrap(),
            )
        })
        .collect();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let path = dir.path().join(format!("m_{dt}.safetensors"));
        save(&path, tensors.iter().map(|(k, t)| (k, t)), dt).unwrap();
        let file = SafeTensorsFile::open(&path).unwrap();
        assert_eq!(file.len(), shapes.len());
        let loaded = load(&path).unwrap();
        for (k, t) in &tensors {
            let info = file.info(k).unwrap();
            assert_eq!((info.dtype, info.shape.as_slice()), (dt, t.dims()));
            let got = &loaded[k];
            assert_eq!(got.dims(), t.dims());
            let want = round_through(&t.to_vec().unwrap(), dt).unwrap();
            assert_eq!(got.to_vec().unwrap(), want, "{k} in {dt}");
            if dt == DType::F32 {
                assert_eq!(got.to_vec().unwrap(), t.to_vec().unwrap());
            }
        }
    }
    // Only the three checkpoints: no temp files left behind.
    assert_eq!(listing(dir.path()).len(), 3);
}

#[test]
fn files_are_readable_by_the_safetensors_crate_and_vice_versa() {
    let dir = temp();
    let path = dir.path().join("x.safetensors");
    let t = Tensor::from_vec(vec![1.5, -2.0, 0.25], [3]).unwrap();
    save(&path, [("a", &t)], DType::BF16).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("a").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::BF16);
    let expect: Vec<u8> = [1.5f32, -2.0, 0.25]
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    assert_eq!(view.data(), expect.as_slice());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Permuted, sliced and broadcast tensors save in logical row-major order.
    #[test]
    fn non_contiguous_tensors_save_in_logical_order(
        a in 1usize..6, b in 1usize..6, c in 1usize..5, start in 0usize..3, which in 0usize..3,
    ) {
        let base = Tensor::from_vec(values(a * b * c, 9), [a, b, c]).unwrap();
        let t = match which {
            0 => base.permute(&[2, 0, 1]).unwrap(),
            1 => base.narrow(1, start.min(b - 1), b - start.min(b - 1)).unwrap().transpose(0, 2).unwrap(),
            _ => base.narrow(0, 0, 1).unwrap().broadcast_as([3, b, c]).unwrap(),
        };
        let dir = temp();
        let path = dir.path().join("nc.safetensors");
        save(&path, [("x", &t)], DType::F32).unwrap();
        let back = SafeTensorsFile::open(&path).unwrap().get("x").unwrap();
        prop_assert_eq!(back.dims(), t.dims());
        prop_assert_eq!(back.to_vec().unwrap(), t.to_vec().unwrap());
    }
}

fn saved_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("model.safetensors");
    let w = Tensor::from_vec(values(60, 4), [6, 10]).unwrap();
    let b = Tensor::from_vec(values(6, 5), [6]).unwrap();
    save(&path, [("proj.weight", &w), ("proj.bias", &b)], DType::F32).unwrap();
    path
}

#[test]
fn missing_file_names_the_path() {
    let dir = temp();
    let path = dir.path().join("absent.safetensors");
    let e = SafeTensorsFile::open(&path).unwrap_err();
    assert!(
        matches!(&e, TensorError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(msg(e).contains("absent.safetensors"));
}

#[test]
fn truncated_files_are_errors_naming_the_path() {
    let dir = temp();
    let path = saved_file(dir.path());
    let full = std::fs::read(&path).unwrap();
    for keep in [0, 5, 8, 20, full.len() - 1, full.len() - 24] {
        std::fs::write(&path, &full[..keep]).unwrap();
        let e = msg(SafeTensorsFile::open(&path).unwrap_err());
        assert!(
            e.contains("model.safetensors") && e.contains("truncated"),
            "keep {keep}: {e}"
        );
    }
    // Extra trailing bytes are caught too.
    let mut longer = full.clone();
    longer.extend_from_slice(&[0; 8]);
    std::fs::write(&path, &longer).unwrap();
    assert!(msg(SafeTensorsFile::open(&path).unwrap_err()).contains("do not end exactly"));
}

#[test]
fn corrupt_headers_are_errors() {
    let dir = temp();
    let path = saved_file(dir.path());
    let full = std::fs::read(&path).unwrap();
    // Garbage in the JSON.
    let mut bad = full.clone();
    bad[8..14].copy_from_slice(b"!!!!!!");
    std::fs::write(&path, &bad).unwrap();
    let e = msg(SafeTensorsFile::open(&path).unwrap_err());
    assert!(
        e.contains("model.safetensors") && e.contains("corrupt header"),
        "{e}"
    );
    // An absurd header length.
    let mut bad = full.clone();
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    let e = msg(SafeTensorsFile::open(&path).unwrap_err());
    assert!(
        e.contains("corrupt header") || e.contains("truncated"),
        "{e}"
    );
    // A byte range that does not match shape x dtype.
    let header = br#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 8]);
    std::fs::write(&path, &file).unwrap();
    let e = msg(SafeTensorsFile::open(&path).unwrap_err());
    assert!(e.contains("does not match its shape"), "{e}");
}

#[test]
fn missing_key_lists_available_keys() {
    let dir = temp();
    let path = saved_file(dir.path());
    let file = SafeTensorsFile::open(&path).unwrap();
    assert_eq!(file.names(), vec!["proj.bias", "proj.weight"]);
    assert!(file.contains("proj.bias") && !file.contains("proj.weigh"));
    let e = msg(file.get("proj.weights").unwrap_err());
    assert!(
        e.contains("model.safetensors") && e.contains("'proj.weights'"),
        "{e}"
    );
    assert!(
        e.contains("'proj.weight'") && e.contains("'proj.bias'"),
        "{e}"
    );
}

/// A raw tensor for writing test files in any dtype.
struct Raw(safetensors::Dtype, Vec<usize>, Vec<u8>);
impl safetensors::View for &Raw {
    fn dtype(&self) -> safetensors::Dtype {
        self.0
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.2)
    }
    fn data_len(&self) -> usize {
        self.2.len()
    }
}

#[test]
fn integer_tensors_load_and_f8_tensors_are_named_errors() {
    let dir = temp();
    let path = dir.path().join("clip.safetensors");
    let ids: Vec<u8> = (0i64..77).flat_map(|x| x.to_le_bytes()).collect();
    let pos = Raw(safetensors::Dtype::I64, vec![1, 77], ids);
    let f8 = Raw(safetensors::Dtype::F8_E4M3, vec![2], vec![0x38, 0x40]);
    safetensors::serialize_to_file([("position_ids", &pos), ("scale", &f8)], &None, &path).unwrap();
    let file = SafeTensorsFile::open(&path).unwrap();
    let p = file.get("position_ids").unwrap();
    assert_eq!(p.dims(), &[1, 77]);
    assert_eq!(
        p.to_vec().unwrap(),
        (0..77).map(|x| x as f32).collect::<Vec<_>>()
    );
    assert_eq!(file.info("scale").unwrap().dtype, DType::F8E4M3);
    let e = msg(file.get("scale").unwrap_err());
    assert!(
        e.contains("clip.safetensors") && e.contains("'scale'") && e.contains("F8_E4M3"),
        "{e}"
    );
    assert!(load(&path).is_err());
}

#[test]
fn save_rejects_bad_requests_and_replaces_atomically() {
    let dir = temp();
    let path = dir.path().join("w.safetensors");
    let t = Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap();
    let e = msg(save(&path, [("a", &t)], DType::I32).unwrap_err());
    assert!(e.contains("I32"), "{e}");
    let e = msg(save(&path, [("a", &t), ("a", &t)], DType::F32).unwrap_err());
    assert!(e.contains("'a' given twice"), "{e}");
    assert!(listing(dir.path()).is_empty());
    // Replace an existing file; the new content wins and nothing else is left.
    std::fs::write(&path, b"old").unwrap();
    save(&path, [("a", &t)], DType::F16).unwrap();
    assert_eq!(load(&path).unwrap()["a"].to_vec().unwrap(), vec![1.0, 2.0]);
    assert_eq!(listing(dir.path()), vec!["w.safetensors"]);
    // A directory that does not exist: an error naming the target, nothing written.
    let e = msg(save(
        dir.path().join("no/such/w.safetensors"),
        [("a", &t)],
        DType::F32,
    )
    .unwrap_err());
    assert!(e.contains("no/such/w.safetensors"), "{e}");
}

#[test]
fn write_atomic_leaves_old_file_when_the_target_cannot_be_replaced() {
    let dir = temp();
    // The target is a non-empty directory: rename fails, the temp file is cleaned up.
    let target = dir.path().join("d");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(write_atomic(&target, b"new").is_err());
    assert_eq!(listing(dir.path()), vec!["d"]);
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");
}
