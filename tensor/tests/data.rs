//! IDX parsing, Fashion-MNIST loading (the real dataset: installed by
//! `apt-get install dataset-fashion-mnist`, as CI does), batching and shuffling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;

use common::Lcg;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use tensor::data::batches::{chunks, draw_index, IndexBatches};
use tensor::data::fashion_mnist::{load_split, resolve_dir, DirSource, DEFAULT_DIR};
use tensor::data::idx::{parse_idx, read_idx};
use tensor::data::{randperm, shuffle, Batches, FashionMnist, ImageDataset, Split, CLASS_NAMES};
use tensor::{Rng, TensorError};

/// Draws from a fixed list (to check how draws map to swaps).
struct Scripted(Vec<f64>, usize);
impl Rng for Scripted {
    fn uniform(&mut self) -> f64 {
        self.1 += 1;
        self.0[self.1 - 1]
    }
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

// ---- IDX ----------------------------------------------------------------------

#[test]
fn idx_parses_and_checks_every_length() {
    let p = Path::new("x.idx");
    let data: Vec<u8> = (0..2 * 3 * 5).map(|i| i as u8 * 3).collect();
    let a = parse_idx(&idx_bytes(&[2, 3, 5], &data), p).unwrap();
    assert_eq!((a.dims, a.data), (vec![2, 3, 5], data.clone()));

    let full = idx_bytes(&[2, 3, 5], &data);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (full[..3].to_vec(), "too short"),
        (full[..10].to_vec(), "truncated IDX header"),
        (full[..full.len() - 1].to_vec(), "truncated IDX file"),
        (
            [full.clone(), vec![0]].concat(),
            "need 30 data bytes, found 31",
        ),
        ([&[1u8, 0][..], &full[2..]].concat(), "not an IDX file"),
        (
            [&[0u8, 0, 0x0d][..], &full[3..]].concat(),
            "0x0d is not supported",
        ),
        (vec![0, 0, 8, 0], "0 dimensions"),
    ];
    for (bytes, want) in cases {
        let e = parse_idx(&bytes, p).unwrap_err().to_string();
        assert!(e.contains("x.idx") && e.contains(want), "{want}: {e}");
    }
}

#[test]
fn idx_files_read_plain_or_gzipped_and_broken_gzip_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = idx_bytes(&[4], &[9, 8, 7, 6]);
    let plain = dir.path().join("l-idx1-ubyte");
    std::fs::write(&plain, &bytes).unwrap();
    let gzp = dir.path().join("l-idx1-ubyte.gz");
    let packed = gz(&bytes);
    std::fs::write(&gzp, &packed).unwrap();
    assert_eq!(read_idx(&plain).unwrap(), read_idx(&gzp).unwrap());
    assert_eq!(read_idx(&gzp).unwrap().data, vec![9, 8, 7, 6]);

    std::fs::write(&gzp, &packed[..packed.len() - 6]).unwrap();
    let e = read_idx(&gzp).unwrap_err().to_string();
    assert!(e.contains("l-idx1-ubyte.gz") && e.contains("gzip"), "{e}");
    let mut corrupt = packed.clone();
    corrupt[12] ^= 0xff;
    std::fs::write(&gzp, &corrupt).unwrap();
    assert!(read_idx(&gzp).is_err());
}

// ---- locating the dataset -----------------------------------------------------

#[test]
fn directory_precedence_is_argument_then_env_then_default() {
    let arg = Path::new("/a");
    assert_eq!(
        resolve_dir(Some(arg), Some("/e".into())),
        (arg.to_path_buf(), DirSource::Argument)
    );
    assert_eq!(
        resolve_dir(None, Some("/e".into())),
        ("/e".into(), DirSource::EnvVar)
    );
    assert_eq!(
        resolve_dir(None, Some("".into())),
        (DEFAULT_DIR.into(), DirSource::Default)
    );
    assert_eq!(
        resolve_dir(None, None),
        (DEFAULT_DIR.into(), DirSource::Default)
    );
}

#[test]
fn missing_dataset_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = FashionMnist::load_from(dir.path()).unwrap_err();
    assert!(
        matches!(&e, TensorError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    let m = e.to_string();
    assert!(m.contains("apt-get install dataset-fashion-mnist"), "{m}");
    assert!(m.contains("FASHION_MNIST_DIR"), "{m}");
    assert!(m.contains("train-images-idx3-ubyte.gz"), "{m}");
    assert!(m.contains(&dir.path().display().to_string()), "{m}");
}

#[test]
fn a_small_dataset_directory_loads_and_bad_labels_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let img: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    let write =
        |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), gz(&bytes)).unwrap();
    write("train-images-idx3-ubyte.gz", idx_bytes(&[3, 28, 28], &img));
    write("train-labels-idx1-ubyte.gz", idx_bytes(&[3], &[4, 0, 9]));
    // The test split uncompressed: accepted too.
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(&[1, 28, 28], &img[..784]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[1], &[2]),
    )
    .unwrap();
    let ds = FashionMnist::load_from(dir.path()).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (3, 1));
    assert_eq!(ds.train.labels(), &[4, 0, 9]);
    assert_eq!(ds.train.image(2).unwrap(), &img[2 * 784..]);

    write("train-labels-idx1-ubyte.gz", idx_bytes(&[3], &[4, 10, 9]));
    let e = load_split(dir.path(), DirSource::Argument, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 10 at index 1"), "{e}");
    write("train-labels-idx1-ubyte.gz", idx_bytes(&[2], &[4, 0]));
    let e = load_split(dir.path(), DirSource::Argument, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 labels for 3 images"), "{e}");
    write(
        "train-images-idx3-ubyte.gz",
        idx_bytes(&[1, 27, 29], &img[..27 * 29]),
    );
    let e = load_split(dir.path(), DirSource::Argument, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 28x28"), "{e}");
}

// ---- the real dataset ---------------------------------------------------------

fn real() -> &'static FashionMnist {
    static DS: OnceLock<FashionMnist> = OnceLock::new();
    DS.get_or_init(|| FashionMnist::load().unwrap_or_else(|e| panic!("{e}")))
}

fn real_file(name: &str) -> std::path::PathBuf {
    tensor::data::fashion_mnist::dataset_dir(None).0.join(name)
}

#[test]
fn real_dataset_sizes_labels_and_class_balance() {
    let ds = real();
    assert_eq!((ds.train.len(), ds.test.len()), (60000, 10000));
    assert_eq!((ds.train.height(), ds.train.width()), (28, 28));
    assert_eq!(ds.train.images().len(), 60000 * 784);
    // Fashion-MNIST is balanced: 6000 / 1000 images per class.
    for (split, per_class) in [(&ds.train, 6000), (&ds.test, 1000)] {
        let mut counts = [0usize; 10];
        for &l in split.labels() {
            counts[usize::from(l)] += 1;
        }
        assert_eq!(counts, [per_class; 10]);
    }
    assert_eq!(
        CLASS_NAMES[usize::from(ds.train.label(0).unwrap())],
        "Ankle boot"
    );
}

#[test]
fn real_first_labels_match_the_raw_files() {
    let ds = real();
    let raw = gunzip(&real_file("train-labels-idx1-ubyte.gz"));
    assert_eq!(&raw[..8], &[0, 0, 8, 1, 0, 0, 0xea, 0x60]); // magic, 60000
    assert_eq!(&ds.train.labels()[..10], &raw[8..18]);
    assert_eq!(&ds.train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    let raw = gunzip(&real_file("t10k-labels-idx1-ubyte.gz"));
    assert_eq!(ds.test.labels(), &raw[8..]);
}

#[test]
fn real_train_images_hash_matches_reference() {
    let raw = gunzip(&real_file("train-images-idx3-ubyte.gz"));
    let hex: String = Sha256::digest(&raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    );
    assert_eq!(real().train.images(), &raw[16..]);
}

#[test]
fn real_tensors_are_scaled_and_padded() {
    let test = &real().test;
    let x = test.to_tensor().unwrap();
    assert_eq!(x.dims(), &[10000, 1, 28, 28]);
    let v = x.to_vec().unwrap();
    let want: Vec<f32> = test
        .images()
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    assert_eq!(v, want);
    assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let p = test.batch_tensor(&[9999, 0], 2).unwrap();
    assert_eq!(p.dims(), &[2, 1, 32, 32]);
    let pv = p.to_vec().unwrap();
    for b in 0..2 {
        let img = &pv[b * 1024..(b + 1) * 1024];
        let src = test.image([9999, 0][b]).unwrap();
        for y in 0..32 {
            for xx in 0..32 {
                let inside = (2..30).contains(&y) && (2..30).contains(&xx);
                let want = if inside {
                    f32::from(src[(y - 2) * 28 + xx - 2]) / 255.0
                } else {
                    0.0
                };
                assert_eq!(img[y * 32 + xx], want, "image {b} at ({y}, {xx})");
            }
        }
    }
    assert!(test.batch_tensor(&[10000], 0).is_err());
}

#[test]
fn a_shuffled_epoch_visits_every_index_once() {
    let train = &real().train;
    let mut rng = Lcg::new(42);
    let batches = Batches::new(train, 256).unwrap().shuffled(&mut rng);
    assert_eq!(batches.len(), 235); // 234 full + one of 96
    let order = batches.order().to_vec();
    assert_ne!(&order[..10], &(0..10).collect::<Vec<_>>()[..]);
    let mut seen = vec![false; train.len()];
    let mut total = 0;
    for (k, b) in batches.enumerate() {
        let b = b.unwrap();
        let n = b.indices.len();
        assert_eq!(n, if k < 234 { 256 } else { 96 });
        assert_eq!(b.images.dims(), &[n, 1, 28, 28]);
        assert_eq!(b.indices, order[k * 256..k * 256 + n]);
        // Labels and pixels belong to the drawn indices.
        assert_eq!(
            b.labels,
            b.indices
                .iter()
                .map(|&i| train.label(i).unwrap())
                .collect::<Vec<_>>()
        );
        let last = b.indices[n - 1];
        let px = b.images.to_vec().unwrap();
        assert_eq!(
            px[(n - 1) * 784 + 400],
            f32::from(train.image(last).unwrap()[400]) / 255.0
        );
        for &i in &b.indices {
            assert!(!seen[i], "index {i} twice");
            seen[i] = true;
        }
        total += n;
    }
    assert_eq!(total, 60000);
    assert!(seen.iter().all(|&s| s));
    // drop_last and padding.
    let mut it = Batches::new(train, 256).unwrap().drop_last(true).pad(2);
    assert_eq!(it.len(), 234);
    assert_eq!(it.next().unwrap().unwrap().images.dims(), &[256, 1, 32, 32]);
}

// ---- shuffling and batching (no dataset needed) -------------------------------

#[test]
fn fisher_yates_maps_each_draw_to_floor_u_times_i_plus_one() {
    // n = 4: i = 3 draws 0.9 -> j = 3 (no-op); i = 2 draws 0.1 -> j = 0; i = 1 draws
    // 0.6 -> j = 1 (no-op). [0, 1, 2, 3] -> [2, 1, 0, 3].
    let mut v = vec![0, 1, 2, 3];
    shuffle(&mut v, &mut Scripted(vec![0.9, 0.1, 0.6], 0));
    assert_eq!(v, vec![2, 1, 0, 3]);
    // All draws 0: each item i swaps with item 0.
    let mut v = vec![0, 1, 2, 3, 4];
    shuffle(&mut v, &mut Scripted(vec![0.0; 4], 0));
    assert_eq!(v, vec![1, 2, 3, 4, 0]);
    // The largest draw below 1 stays in range, and a (buggy) draw of exactly 1 is capped.
    let below_one = 1.0 - f64::EPSILON / 2.0;
    let big = usize::MAX / 2;
    assert!(draw_index(&mut Scripted(vec![below_one], 0), big) < big);
    assert_eq!(draw_index(&mut Scripted(vec![below_one], 0), 3), 2);
    assert_eq!(draw_index(&mut Scripted(vec![1.0], 0), 3), 2);
    // Empty and single-element slices draw nothing.
    shuffle(&mut Vec::<u8>::new(), &mut Scripted(vec![], 0));
    shuffle(&mut [7], &mut Scripted(vec![], 0));
}

#[test]
fn shuffles_are_deterministic_and_uniform() {
    assert_eq!(
        randperm(50, &mut Lcg::new(7)),
        randperm(50, &mut Lcg::new(7))
    );
    assert_ne!(
        randperm(50, &mut Lcg::new(7)),
        randperm(50, &mut Lcg::new(8))
    );
    let mut p = randperm(1009, &mut Lcg::new(3));
    p.sort_unstable();
    assert_eq!(p, (0..1009).collect::<Vec<_>>());
    // All 6 orders of 3 items, each near 1/6 of 60,000 shuffles (sd ~ 91).
    let mut rng = Lcg::new(11);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..60000 {
        *counts.entry(randperm(3, &mut rng)).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 6);
    for (perm, c) in counts {
        assert!((9500..10500).contains(&c), "{perm:?}: {c}");
    }
}

#[test]
fn index_batches_cover_odd_sizes() {
    for (n, bs) in [(0, 1), (1, 1), (1, 5), (7, 3), (13, 13), (13, 4), (97, 10)] {
        for drop_last in [false, true] {
            let it = IndexBatches::sequential(n, bs, drop_last).unwrap();
            let expect_len = if drop_last { n / bs } else { n.div_ceil(bs) };
            assert_eq!(it.len(), expect_len);
            let batches: Vec<Vec<usize>> = it.collect();
            assert_eq!(batches.len(), expect_len, "n {n} bs {bs} drop {drop_last}");
            assert!(batches
                .iter()
                .all(|b| b.len() == bs || (!drop_last && b.len() == n % bs)));
            let flat: Vec<usize> = batches.concat();
            assert_eq!(flat, (0..flat.len()).collect::<Vec<_>>());
        }
    }
    assert!(IndexBatches::sequential(5, 0, false).is_err());
    let s: HashSet<usize> = IndexBatches::shuffled(20, 6, false, &mut Lcg::new(1))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(s.len(), 20);
}

#[test]
fn batches_over_a_subset_and_bad_indices() {
    let ds = ImageDataset::new(
        (0..5 * 4).map(|i| i as u8).collect(),
        vec![0, 1, 2, 3, 4],
        2,
        2,
    )
    .unwrap();
    let b: Vec<_> = Batches::over_indices(&ds, vec![4, 1, 3], 2)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].labels, vec![4, 1]);
    assert_eq!(
        b[0].images.to_vec().unwrap()[..4],
        [16.0, 17.0, 18.0, 19.0].map(|v| v / 255.0)
    );
    assert_eq!(b[1].indices, vec![3]);
    assert!(Batches::over_indices(&ds, vec![5], 2).is_err());
    assert!(ImageDataset::new(vec![0; 7], vec![0, 1], 2, 2).is_err());
}

#[test]
fn chunks_cut_a_flat_image_into_rows_like_islice() {
    let flat: Vec<u16> = (0..784).collect();
    let rows: Vec<Vec<u16>> = chunks(flat.iter().copied(), 28).collect();
    assert_eq!(rows.len(), 28);
    assert!(rows.iter().all(|r| r.len() == 28));
    assert_eq!(rows[5], (140..168).collect::<Vec<_>>());
    let sizes: Vec<usize> = chunks(0..10, 4).map(|c| c.len()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_eq!(chunks(0..10, 0).count(), 0);
    assert_eq!(chunks(Vec::<u8>::new(), 3).count(), 0);
}
