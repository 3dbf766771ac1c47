//! PNG images: load, save with the Stable Diffusion u8 conversion, grids.

use tensor::io::image::{pm1_to_u8, unit_to_u8};
use tensor::io::{image_grid, load_image, load_image_pm1, save_image_pm1, save_image_unit};
use tensor::{Tensor, TensorError};

use super::{listing, msg, temp};

#[test]
fn u8_conversion_matches_numpy_round_half_to_even() {
    // Expected bytes from NumPy: ((x/2 + 0.5).clip(0, 1) * 255).round().astype(uint8), f32.
    let x = [
        -1.0f32,
        -0.5,
        0.0,
        0.5,
        1.0,
        -1.2,
        1.3,
        0.25,
        -0.25,
        0.1,
        -0.7,
        0.003,
        0.9999,
        -0.9999,
        0.0039215686,
    ];
    let want = [
        0u8, 64, 128, 191, 255, 0, 255, 159, 96, 140, 38, 128, 255, 0, 128,
    ];
    assert_eq!(x.map(pm1_to_u8), want);
    // (u.clip(0, 1) * 255).round(): the products are exact ties 127.5, 76.5, 25.5 ...
    let u = [
        0.5f32,
        0.3,
        0.1,
        0.7,
        0.9,
        1.0 / 255.0,
        0.5 / 255.0,
        1.5 / 255.0,
        2.5 / 255.0,
        254.5 / 255.0,
    ];
    assert_eq!(u.map(unit_to_u8), [128, 76, 26, 178, 230, 1, 0, 2, 2, 254]);
}

fn tmp_png(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    dir.path().join(name)
}

#[test]
fn png_round_trip_is_exact_for_gray_and_rgb() {
    let dir = temp();
    for c in [1usize, 3] {
        let (h, w) = (5, 7);
        let bytes: Vec<u8> = (0..c * h * w)
            .map(|i| ((i * 37 + 11) % 256) as u8)
            .collect();
        let unit = Tensor::from_vec(
            bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
            [c, h, w],
        )
        .unwrap();
        let p = tmp_png(&dir, &format!("u{c}.png"));
        save_image_unit(&p, &unit).unwrap();
        let back = load_image(&p).unwrap();
        assert_eq!(back.dims(), &[c, h, w]);
        assert_eq!(back.to_vec().unwrap(), unit.to_vec().unwrap());
        // Same through [-1, 1], with a leading batch dim of 1.
        let pm1 = load_image_pm1(&p).unwrap().unsqueeze(0).unwrap();
        let q = tmp_png(&dir, &format!("p{c}.png"));
        save_image_pm1(&q, &pm1).unwrap();
        assert_eq!(
            load_image(&q).unwrap().to_vec().unwrap(),
            unit.to_vec().unwrap()
        );
        // The file holds exactly these bytes, interleaved HWC.
        let img = image::open(&q).unwrap();
        let raw = if c == 1 {
            img.to_luma8().into_raw()
        } else {
            img.to_rgb8().into_raw()
        };
        let hwc: Vec<u8> = (0..h * w)
            .flat_map(|p| (0..c).map(move |ch| (ch, p)))
            .map(|(ch, p)| bytes[ch * h * w + p])
            .collect();
        assert_eq!(raw, hwc);
    }
    assert_eq!(
        listing(dir.path()),
        vec!["p1.png", "p3.png", "u1.png", "u3.png"]
    );
}

#[test]
fn saving_applies_the_stable_diffusion_conversion_to_every_pixel() {
    let dir = temp();
    // Exact ties for every byte k: x = 2 (k + 0.5) / 255 - 1, plus out-of-range values.
    let mut x: Vec<f32> = (0..255)
        .map(|k| 2.0 * (k as f32 + 0.5) / 255.0 - 1.0)
        .collect();
    x.extend([-3.0, 3.0, f32::INFINITY, f32::NEG_INFINITY, 0.0]);
    let n = x.len();
    let t = Tensor::from_vec(x.clone(), [1, 1, n]).unwrap();
    let p = tmp_png(&dir, "ties.png");
    save_image_pm1(&p, &t).unwrap();
    let got = image::open(&p).unwrap().to_luma8().into_raw();
    // Independent reference: f32 arithmetic, then round half to even by hand.
    let reference = |v: f32| -> u8 {
        let y = (v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0;
        let f = y.floor();
        let r = if y - f > 0.5 || (y - f == 0.5 && f % 2.0 == 1.0) {
            f + 1.0
        } else {
            f
        };
        r as u8
    };
    assert_eq!(got, x.iter().map(|&v| reference(v)).collect::<Vec<_>>());
    assert_eq!(&got[n - 5..], &[0, 255, 255, 0, 128]);
}

#[test]
fn non_contiguous_images_and_alpha_and_16_bit() {
    let dir = temp();
    // HWC data permuted to CHW (non-contiguous).
    let hwc: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32 / 17.0).collect();
    let chw = Tensor::from_vec(hwc.clone(), [2, 3, 3])
        .unwrap()
        .permute(&[2, 0, 1])
        .unwrap();
    assert!(!chw.is_contiguous());
    let p = tmp_png(&dir, "nc.png");
    save_image_unit(&p, &chw).unwrap();
    let raw = image::open(&p).unwrap().to_rgb8().into_raw();
    assert_eq!(raw, hwc.iter().map(|&v| unit_to_u8(v)).collect::<Vec<_>>());
    // RGBA: alpha dropped.
    let rgba = image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 0, 40, 50, 60, 255]).unwrap();
    let q = tmp_png(&dir, "rgba.png");
    rgba.save(&q).unwrap();
    let t = load_image(&q).unwrap();
    assert_eq!(t.dims(), &[3, 1, 2]);
    assert_eq!(
        t.to_vec().unwrap(),
        [10, 40, 20, 50, 30, 60].map(|v| v as f32 / 255.0).to_vec()
    );
    // 16-bit grayscale: divided by 65535.
    let g16 =
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![0u16, 1000, 65535]).unwrap();
    let r = tmp_png(&dir, "g16.png");
    g16.save(&r).unwrap();
    let t = load_image(&r).unwrap();
    assert_eq!(t.dims(), &[1, 1, 3]);
    assert_eq!(t.to_vec().unwrap(), vec![0.0, 1000.0 / 65535.0, 1.0]);
}

#[test]
fn unreadable_images_and_bad_shapes_are_errors_naming_the_path() {
    let dir = temp();
    let missing = tmp_png(&dir, "missing.png");
    let e = load_image(&missing).unwrap_err();
    assert!(matches!(e, TensorError::Io { .. }));
    assert!(msg(e).contains("missing.png"));
    let junk = tmp_png(&dir, "junk.png");
    std::fs::write(&junk, b"this is not a png at all").unwrap();
    let e = msg(load_image(&junk).unwrap_err());
    assert!(e.contains("junk.png") && e.contains("decode"), "{e}");
    // A truncated real PNG.
    let good = tmp_png(&dir, "good.png");
    save_image_unit(&good, &Tensor::full([3, 16, 16], 0.5)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp_png(&dir, "cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = msg(load_image(&cut).unwrap_err());
    assert!(e.contains("cut.png"), "{e}");
    // Shapes and NaN.
    let out = tmp_png(&dir, "out.png");
    for bad in [
        Tensor::zeros([2, 4, 4]),
        Tensor::zeros([4, 4]),
        Tensor::zeros([2, 3, 4, 4]),
        Tensor::zeros([3, 0, 4]),
    ] {
        let e = msg(save_image_unit(&out, &bad).unwrap_err());
        assert!(e.contains("out.png"), "{e}");
    }
    let mut v = vec![0.0; 12];
    v[7] = f32::NAN;
    let e = msg(save_image_pm1(&out, &Tensor::from_vec(v, [3, 2, 2]).unwrap()).unwrap_err());
    assert!(
        e.contains("1 NaN") && e.contains("channel 1, row 1, col 1"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn image_grid_places_image_i_at_row_i_div_cols() {
    // Six 1x2x2 images, image i filled with i.
    let data: Vec<f32> = (0..6).flat_map(|i| vec![i as f32; 4]).collect();
    let batch = Tensor::from_vec(data, [6, 1, 2, 2]).unwrap();
    let g = image_grid(&batch, 2, 3).unwrap();
    assert_eq!(g.dims(), &[1, 4, 6]);
    let row = |r: usize| g.to_vec().unwrap()[r * 6..(r + 1) * 6].to_vec();
    assert_eq!(row(0), vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    assert_eq!(row(3), vec![3.0, 3.0, 4.0, 4.0, 5.0, 5.0]);
    assert!(image_grid(&batch, 2, 2).is_err());
    assert!(image_grid(&Tensor::zeros([1, 2, 2]), 1, 1).is_err());
}
