//! Random number generators: Wichmann-Hill as in the course, fork safety (with a real
//! `fork()`), split streams, Box-Muller, and PyTorch `randn` parity from a fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tensor::random::{
    box_muller, draw_in_forked_child, BoxMuller, NaiveWichmannHill, WichmannHill,
};
use tensor::{Rng, Tensor};

/// PyTorch's generator: in its own file to keep each under ~500 lines.
#[path = "random/torch_parity.rs"]
mod torch_parity;

const SEED: u64 = 457428938475;
const FIRST_TEN: [f64; 10] = [
    0.7645251082582081,
    0.7920889799553945,
    0.06912886811267205,
    0.9559050644103264,
    0.840065633394744,
    0.15532781424845843,
    0.003930264311536424,
    0.11930314528605379,
    0.716222457198862,
    0.390378014310544,
];

// ---- Wichmann-Hill as in the course --------------------------------------------------

/// The next `n` draws are the course's first `n` numbers.
fn check_course_numbers(rng: &mut impl Rng, n: usize) {
    let draws: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
    assert_eq!(draws, FIRST_TEN[..n]);
}

#[test]
fn naive_wichmann_hill_reproduces_the_course() {
    let mut rng = NaiveWichmannHill::seed(SEED);
    assert_eq!(rng.state(), (4976, 20238, 499));
    check_course_numbers(&mut rng, 10);
    assert_eq!(rng.state(), (15778, 21375, 4968));
}

#[test]
fn fork_safe_wichmann_hill_reproduces_the_course_in_its_own_process() {
    let mut rng = WichmannHill::seed(SEED);
    assert_eq!(rng.state(), (4976, 20238, 499));
    assert_eq!(rng.key(), SEED);
    assert_eq!(rng.pid(), unsafe { libc::getpid() });
    check_course_numbers(&mut rng, 10);
    assert_eq!(rng.state(), (15778, 21375, 4968));
}

#[test]
fn mean_of_ten_thousand_draws() {
    for mean in [
        mean_of(&mut NaiveWichmannHill::seed(SEED), 10_000),
        mean_of(&mut WichmannHill::seed(SEED), 10_000),
    ] {
        assert_eq!(format!("{mean:.14}"), "0.50118776801666");
    }
}

fn mean_of(rng: &mut impl Rng, n: usize) -> f64 {
    (0..n).map(|_| rng.uniform()).sum::<f64>() / n as f64
}

#[test]
fn seeding_covers_edge_seeds_and_stays_in_range() {
    // seed 0 -> (1, 1, 1); the divmod chain takes any u64 and never yields a 0 component
    assert_eq!(NaiveWichmannHill::seed(0).state(), (1, 1, 1));
    assert_eq!(NaiveWichmannHill::seed(30267).state(), (30268, 1, 1));
    assert_eq!(NaiveWichmannHill::seed(30268).state(), (1, 2, 1));
    let (x, y, z) = NaiveWichmannHill::seed(u64::MAX).state();
    assert!(x >= 1 && y >= 1 && z >= 1 && x < 30269 && y < 30307 && z < 30323);
    let mut rng = NaiveWichmannHill::seed(u64::MAX);
    for _ in 0..100_000 {
        let u = rng.uniform();
        assert!((0.0..1.0).contains(&u), "{u}");
    }
}

#[test]
fn from_state_accepts_only_valid_states() {
    assert!(NaiveWichmannHill::from_state((0, 1, 1)).is_none());
    assert!(NaiveWichmannHill::from_state((1, 30307, 1)).is_none());
    assert!(NaiveWichmannHill::from_state((1, 1, 30323)).is_none());
    let mut a = NaiveWichmannHill::from_state((4976, 20238, 499)).unwrap();
    assert_eq!(a.uniform(), FIRST_TEN[0]);
}

// ---- fork ------------------------------------------------------------------------------

/// Fork with libc directly: the child draws once, writes the 8 bytes to a pipe and
/// `_exit`s (async-signal-safe work only); the parent reads them and reaps the child.
fn fork_and_draw(rng: &mut impl Rng) -> (i32, f64) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let bytes = rng.uniform().to_le_bytes();
        unsafe {
            let n = libc::write(fds[1], bytes.as_ptr().cast(), 8);
            libc::_exit(if n == 8 { 0 } else { 1 });
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut buf = [0u8; 8];
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 8) };
    let mut status = 0;
    unsafe {
        libc::close(fds[0]);
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_eq!(n, 8, "child sent {n} bytes");
    (pid, f64::from_le_bytes(buf))
}

#[test]
fn naive_generator_repeats_its_stream_in_a_forked_child() {
    let mut rng = NaiveWichmannHill::seed(SEED);
    check_course_numbers(&mut rng, 3);
    let (_, child) = fork_and_draw(&mut rng);
    let parent = rng.uniform();
    assert_eq!(child, 0.9559050644103264);
    assert_eq!(parent, 0.9559050644103264);
}

#[test]
fn fork_safe_generator_gives_the_child_its_own_reproducible_stream() {
    let mut rng = WichmannHill::seed(SEED);
    check_course_numbers(&mut rng, 3);
    let (child_pid, child) = fork_and_draw(&mut rng);
    let parent = rng.uniform();
    assert_eq!(
        parent, 0.9559050644103264,
        "the parent's stream is untouched"
    );
    assert_ne!(child, parent);
    // What the child drew is a function of (seed, child pid) only: the parent can
    // compute it, and a fresh generator with the same seed predicts the same.
    assert_eq!(rng.forked_stream(child_pid).uniform(), child);
    assert_eq!(
        WichmannHill::seed(SEED).forked_stream(child_pid).uniform(),
        child
    );
    let key =
        tensor::random::fork_safe::mix(SEED, tensor::random::fork_safe::FORK_TAG, child_pid as u64);
    assert_eq!(NaiveWichmannHill::seed(key).uniform(), child);
    assert!((0.0..1.0).contains(&child));
}

#[test]
fn two_children_get_different_streams_and_the_library_helper_agrees() {
    let mut rng = WichmannHill::seed(SEED);
    let (pid_a, a) = fork_and_draw(&mut rng);
    let (pid_b, b) = draw_in_forked_child(&mut rng).unwrap();
    assert_ne!(pid_a, pid_b);
    assert_ne!(a, b);
    assert_eq!(rng.forked_stream(pid_a).uniform(), a);
    assert_eq!(rng.forked_stream(pid_b).uniform(), b);
    // the helper leaves the parent's generator where it was
    assert_eq!(rng.uniform(), FIRST_TEN[0]);
    // and with a naive generator the helper shows the bug
    let mut naive = NaiveWichmannHill::seed(SEED);
    let (_, c) = draw_in_forked_child(&mut naive).unwrap();
    assert_eq!(c, naive.uniform());
}

#[test]
fn forked_stream_depends_on_the_pid() {
    let rng = WichmannHill::seed(SEED);
    let draws: Vec<f64> = (1..50)
        .map(|pid| rng.forked_stream(pid).uniform())
        .collect();
    for (i, a) in draws.iter().enumerate() {
        for b in &draws[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

// ---- split -----------------------------------------------------------------------------

#[test]
fn split_streams_are_deterministic_and_distinct() {
    let take = |rng: &mut WichmannHill| (0..1000).map(|_| rng.uniform()).collect::<Vec<_>>();
    let mut a = WichmannHill::seed(SEED);
    let mut b = WichmannHill::seed(SEED);
    let a_streams: Vec<Vec<f64>> = (0..4).map(|_| take(&mut a.split())).collect();
    let b_streams: Vec<Vec<f64>> = (0..4).map(|_| take(&mut b.split())).collect();
    assert_eq!(a_streams, b_streams, "same seed, same streams");
    // splitting does not advance the parent's draws
    assert_eq!(take(&mut a)[..10], FIRST_TEN);
    let parent = take(&mut WichmannHill::seed(SEED));
    for (i, s) in a_streams.iter().enumerate() {
        assert_ne!(s, &parent);
        for t in &a_streams[i + 1..] {
            assert_ne!(s, t);
            // no shared run: no value of one stream appears in another
            assert!(s.iter().all(|x| !t.contains(x)));
        }
        // each stream looks uniform and uncorrelated with the parent
        let mean = s.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        let corr = correlation(s, &parent);
        assert!(corr.abs() < 0.1, "correlation {corr}");
    }
    // a split of a split is a fresh key again
    let mut c = WichmannHill::seed(SEED);
    let mut s0 = c.split();
    let s00 = s0.split();
    assert_ne!(s00.key(), s0.key());
    assert_ne!(s00.key(), c.key());
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn split_streams_serve_threads_deterministically() {
    let run = || {
        let mut root = WichmannHill::seed(42);
        let streams: Vec<WichmannHill> = (0..3).map(|_| root.split()).collect();
        let handles: Vec<_> = streams
            .into_iter()
            .map(|mut s| std::thread::spawn(move || (0..100).map(|_| s.uniform()).sum::<f64>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<f64>>()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(first[0] != first[1] && first[1] != first[2]);
}

// ---- Box-Muller and Tensor::rand / randn -----------------------------------------------

#[test]
fn box_muller_known_values() {
    let (z0, z1) = box_muller(0.0, 0.0); // ln(1) = 0
    assert_eq!((z0, z1), (0.0, 0.0));
    let r = (-2.0 * 0.25f64.ln()).sqrt(); // u1 = 0.75
    let (z0, z1) = box_muller(0.75, 0.125); // theta = pi / 4
    assert!((z0 - r / 2f64.sqrt()).abs() < 1e-15 && (z1 - r / 2f64.sqrt()).abs() < 1e-15);
    let (z0, z1) = box_muller(0.75, 0.5); // theta = pi
    assert!((z0 + r).abs() < 1e-15 && z1.abs() < 1e-15);
}

#[test]
fn box_muller_caches_the_second_value() {
    let mut rng = NaiveWichmannHill::seed(SEED);
    let mut normal = BoxMuller::standard();
    let a = normal.sample(&mut rng);
    assert!(normal.has_cached());
    let b = normal.sample(&mut rng);
    assert!(!normal.has_cached());
    let (z0, z1) = box_muller(FIRST_TEN[0], FIRST_TEN[1]);
    assert_eq!((a, b), (z0, z1));
    assert_eq!(rng.uniform(), FIRST_TEN[2], "two uniforms per pair");
    let mut shifted = BoxMuller::new(3.0, 2.0).unwrap();
    let mut rng = NaiveWichmannHill::seed(SEED);
    assert_eq!(shifted.sample(&mut rng), 3.0 + 2.0 * z0);
    assert!(BoxMuller::new(0.0, -1.0).is_err());
    assert!(BoxMuller::new(f64::NAN, 1.0).is_err());
}

#[test]
fn box_muller_normals_have_mean_zero_and_std_one() {
    for n in [10_000usize, 100_000] {
        let x = Tensor::randn([n], &mut WichmannHill::seed(SEED))
            .unwrap()
            .to_vec()
            .unwrap();
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        // standard errors: mean 1/sqrt(n), std about 1/sqrt(2n); allow 4 of them
        let se = 1.0 / (n as f64).sqrt();
        assert!(mean.abs() < 4.0 * se, "n={n} mean {mean}");
        assert!(
            (var.sqrt() - 1.0).abs() < 4.0 * se,
            "n={n} std {}",
            var.sqrt()
        );
        let within_1 = x.iter().filter(|v| v.abs() < 1.0).count() as f64 / n as f64;
        assert!((within_1 - 0.6827).abs() < 0.02, "P(|z|<1) = {within_1}");
    }
}

#[test]
fn tensor_randn_is_pairwise_box_muller_and_drops_the_odd_tail() {
    for n in [0usize, 1, 2, 3, 7, 10] {
        let t = Tensor::randn([n], &mut NaiveWichmannHill::seed(SEED)).unwrap();
        let mut normal = BoxMuller::standard();
        let mut rng = NaiveWichmannHill::seed(SEED);
        let want: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) as f32).collect();
        assert_eq!(t.to_vec().unwrap(), want);
    }
    // no cache across calls: after an odd randn the next call starts a new pair
    let mut rng = NaiveWichmannHill::seed(SEED);
    let _ = Tensor::randn([3], &mut rng).unwrap();
    let next = Tensor::randn([1], &mut rng).unwrap().to_scalar().unwrap();
    assert_eq!(next, box_muller(FIRST_TEN[4], FIRST_TEN[5]).0 as f32);
    let t = Tensor::randn([2, 3, 5], &mut rng).unwrap();
    assert_eq!(t.dims(), &[2, 3, 5]);
}

#[test]
fn tensor_rand_is_one_uniform_per_element() {
    let t = Tensor::rand([2, 5], &mut NaiveWichmannHill::seed(SEED)).unwrap();
    assert_eq!(t.dims(), &[2, 5]);
    let want: Vec<f32> = FIRST_TEN.iter().map(|&u| u as f32).collect();
    assert_eq!(t.to_vec().unwrap(), want);
    assert_eq!(
        Tensor::rand([0, 3], &mut NaiveWichmannHill::seed(1))
            .unwrap()
            .numel(),
        0
    );
    // values stay below 1 even when an f64 just below 1 would round up in f32
    struct AlmostOne;
    impl Rng for AlmostOne {
        fn uniform(&mut self) -> f64 {
            1.0 - 1e-12
        }
    }
    let v = Tensor::rand([3], &mut AlmostOne).unwrap().to_vec().unwrap();
    assert!(v.iter().all(|&x| x < 1.0 && x > 0.999), "{v:?}");
}
