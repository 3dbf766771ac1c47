//! PyTorch parity of `TorchGenerator` (part of the `random` test target): MT19937,
//! the reference latents, seeding, randn's block structure, and the recorded fixture.

use tensor::random::{Mt19937, TorchGenerator};
use tensor::Rng;

#[test]
fn mt19937_matches_the_cpp_standard() {
    let mut mt = Mt19937::new(5489);
    let first: Vec<u32> = (0..3).map(|_| mt.next_u32()).collect();
    assert_eq!(first, [3499211612, 581869302, 3890346734]);
    let mut mt = Mt19937::new(5489);
    assert_eq!((0..10_000).map(|_| mt.next_u32()).last(), Some(4123659995));
}

#[test]
fn torch_randn_reference_latents() {
    let mut g = TorchGenerator::manual_seed(100);
    let x = g.randn([1, 4, 64, 64]).unwrap();
    assert_eq!(x.dims(), &[1, 4, 64, 64]);
    let head = &x.to_vec().unwrap()[..4];
    for (a, b) in head
        .iter()
        .zip([0.1268493f32, 1.3563979, 0.5632231, -0.1039286])
    {
        assert!((a - b).abs() < 1e-6, "{head:?}");
    }
}

#[test]
fn torch_seed_uses_the_low_32_bits_and_reseeding_clears_the_cache() {
    let mut a = TorchGenerator::manual_seed((1 << 32) + 5);
    let mut b = TorchGenerator::manual_seed(5);
    assert_eq!(
        a.randn([9]).unwrap().to_vec().unwrap(),
        b.randn([9]).unwrap().to_vec().unwrap()
    );
    assert_eq!(a.initial_seed(), (1 << 32) + 5);
    let mut g = TorchGenerator::manual_seed(0);
    let first = g.randn([1]).unwrap().to_scalar().unwrap();
    assert!(g.has_cached_normal());
    let mut g = TorchGenerator::manual_seed(0);
    assert!(!g.has_cached_normal());
    assert_eq!(g.randn([1]).unwrap().to_scalar().unwrap(), first);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// The structure of torch's vectorised randn, against an f64 reference built from
    /// `rand` on the same seed: n uniforms, Box-Muller per block of 16 on pairs
    /// (j, j + 8), and when n % 16 != 0 the last 16 slots redone from 16 new uniforms.
    #[test]
    fn torch_randn_is_blockwise_box_muller_of_rand(seed in proptest::prelude::any::<u64>(), n in 16usize..200) {
        let got = TorchGenerator::manual_seed(seed).randn([n]).unwrap().to_vec().unwrap();
        let mut g = TorchGenerator::manual_seed(seed);
        let mut u: Vec<f64> = g.rand([n]).unwrap().to_vec().unwrap().into_iter().map(f64::from).collect();
        let bm = |b: &mut [f64]| {
            for j in 0..8 {
                let r = (-2.0 * (1.0 - b[j]).ln()).sqrt();
                let t = 2.0 * std::f64::consts::PI * b[j + 8];
                (b[j], b[j + 8]) = (r * t.cos(), r * t.sin());
            }
        };
        u.chunks_exact_mut(16).for_each(bm);
        if n % 16 != 0 {
            let tail = g.rand([16]).unwrap().to_vec().unwrap();
            u[n - 16..].iter_mut().zip(tail).for_each(|(d, t)| *d = f64::from(t));
            bm(&mut u[n - 16..]);
        }
        for (i, (a, b)) in got.iter().zip(&u).enumerate() {
            proptest::prop_assert!((f64::from(*a) - b).abs() < 4e-6, "n={} [{}]: {} vs {}", n, i, a, b);
        }
    }
}

/// Replays every case recorded in `fixtures/torch_randn.safetensors` (made by
/// `scripts/gen_fixtures.py --only randn`) and compares every tensor to 1e-6.
#[test]
fn torch_generator_matches_torch_fixture() {
    use safetensors::{Dtype, SafeTensors};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/torch_randn.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cases = meta
        .metadata()
        .as_ref()
        .unwrap()
        .get("cases")
        .unwrap()
        .clone();
    let cases = parse_cases(&cases);
    assert!(cases.len() >= 20, "only {} cases", cases.len());

    let mut checked = 0;
    let mut max_diff = 0f64;
    let mut numels = std::collections::BTreeSet::new();
    for (name, seed, calls) in &cases {
        let mut g = TorchGenerator::manual_seed(*seed);
        for (i, (op, shape)) in calls.iter().enumerate() {
            let key = format!("{name}.{i}");
            let view = st.tensor(&key).unwrap();
            assert_eq!(view.shape(), shape.as_slice(), "{key}");
            let want: Vec<f64> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                d => panic!("{key}: unexpected dtype {d:?}"),
            };
            let got: Vec<f64> = match op.as_str() {
                "randn" => g
                    .randn(shape.clone())
                    .unwrap()
                    .to_vec()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                "rand" => g
                    .rand(shape.clone())
                    .unwrap()
                    .to_vec()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                "rand_f64" => (0..want.len()).map(|_| g.uniform()).collect(),
                other => panic!("{key}: unknown op {other}"),
            };
            assert_eq!(got.len(), want.len(), "{key}");
            // rand and the scalar (numel < 16) randn path use no approximated functions
            // on torch's side: those must agree bit for bit.
            let exact = op != "randn" || want.len() < 16;
            for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                let d = (a - b).abs();
                max_diff = max_diff.max(d);
                assert!(d <= 1e-6, "{key}[{j}]: ours {a} torch {b}");
                assert!(
                    !exact || d == 0.0,
                    "{key}[{j}]: ours {a} torch {b} (should be exact)"
                );
            }
            if op == "randn" && calls.len() == 1 {
                numels.insert(want.len());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, st.len(), "every tensor in the fixture was checked");
    for n in [1, 2, 3, 7, 15, 16, 17, 31, 100, 1000, 16384] {
        assert!(numels.contains(&n), "numel {n} not covered");
    }
    println!("checked {checked} tensors, max |ours - torch| = {max_diff:e}");
}

/// The fixture's `cases` metadata: a JSON list of
/// `{"name": str, "seed": int, "calls": [[op, [dims...]], ...]}`.
type Case = (String, u64, Vec<(String, Vec<usize>)>);

fn parse_cases(json: &str) -> Vec<Case> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap().to_string();
            let seed = case["seed"].as_u64().unwrap();
            let calls = case["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|call| {
                    let op = call[0].as_str().unwrap().to_string();
                    let dims = call[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize);
                    (op, dims.collect())
                })
                .collect();
            (name, seed, calls)
        })
        .collect()
}
