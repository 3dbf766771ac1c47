//! The Rust side of the peer comparison (`benches/peers/peers.py` drives it): times
//! this project's kernels (`tensor::matmul::gemm`, `Tensor::conv2d`, attention) and
//! the `gemm` crate on the shapes of [`benches::cases`], inside a rayon pool of a
//! given size, and prints one JSON line per measurement.
//!
//! ```text
//! peers list                          the cases, one JSON line each
//! peers info                          kernels and versions, one JSON line
//! peers run --threads 1 [--samples 10] [--min-time 0.02] [--only SUBSTR|SUBSTR]
//!                                     every case and implementation, one JSON line each
//! peers serve --threads 2             read "IMPL<TAB>CASE<TAB>SAMPLES<TAB>MIN_TIME"
//!                                     lines on stdin, answer each with one JSON line
//! ```
//!
//! Implementations: `ours` (every case; for matmul `tensor::matmul::gemm`, or with
//! `PEERS_KERNEL=avx2` / `portable` the threaded packed rung with that micro-kernel)
//! and `gemm` (the `gemm` crate, matmul cases;
//! `Parallelism::None` on one thread, `Parallelism::Rayon(threads)` otherwise).
//! A measurement is the best of `samples` timed batches (at most 3 when one call
//! takes over 0.2 s), each batch long enough (`min_time` seconds) to swamp the clock,
//! after one untimed warm-up run; `run` interleaves the implementations batch by
//! batch, so noise hits them equally.
//!
//! Attention: with the cargo feature `attention` (peers.py turns it on when
//! `Tensor::scaled_dot_product_attention` exists) `ours` is the library's fused
//! kernel; without it, the composite `softmax(Q K^T / sqrt(d)) V` from
//! `Tensor::matmul` and `Tensor::softmax`, one head at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use benches::{cases, values, Case, NamedCase};
use tensor::matmul::kernels::Kernel;
use tensor::matmul::{gemm, parallel, MatRef};
use tensor::Tensor;

/// The inputs of one case, built once and reused by every implementation.
enum Inputs {
    Matmul {
        a: Vec<f32>,
        b: Vec<f32>,
        /// C lives at `c[c_at..]`, 64-byte aligned (as numpy's and torch's outputs).
        c: Vec<f32>,
        c_at: usize,
    },
    Conv {
        x: Tensor,
        w: Tensor,
        bias: Tensor,
    },
    Attention {
        q: Tensor,
        k: Tensor,
        v: Tensor,
    },
}

fn build(case: Case) -> Inputs {
    match case {
        Case::Matmul { m, k, n, .. } => {
            let c = vec![0.0; m * n + 16];
            let shift: usize = std::env::var("PEERS_C_SHIFT").map_or(0, |v| v.parse().unwrap());
            let c_at = c.as_ptr().align_offset(64).min(16) + shift;
            Inputs::Matmul {
                a: values(m * k, 1),
                b: values(k * n, 2),
                c,
                c_at,
            }
        }
        Case::Conv {
            c_in,
            c_out,
            h,
            w,
            kernel,
        } => Inputs::Conv {
            x: Tensor::from_vec(values(c_in * h * w, 3), [1, c_in, h, w]).unwrap(),
            w: Tensor::from_vec(
                values(c_out * c_in * kernel * kernel, 4),
                [c_out, c_in, kernel, kernel],
            )
            .unwrap(),
            bias: Tensor::from_vec(values(c_out, 5), [c_out]).unwrap(),
        },
        Case::Attention {
            batch,
            heads,
            seq,
            d,
        } => {
            let t = |seed| {
                Tensor::from_vec(
                    values(batch * heads * seq * d, seed),
                    [batch, heads, seq, d],
                )
                .unwrap()
            };
            Inputs::Attention {
                q: t(6),
                k: t(7),
                v: t(8),
            }
        }
    }
}

/// The library's fused attention. If its signature differs, this is the one line to
/// change.
#[cfg(feature = "attention")]
fn attention_ours(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    q.scaled_dot_product_attention(k, v, None, None, false)
        .unwrap()
}

/// `softmax(Q K^T / sqrt(d)) V` from matmul and softmax, one (batch, head) at a time
/// so the scores take `seq^2` floats, not `batch * heads * seq^2`.
#[cfg(not(feature = "attention"))]
fn attention_ours(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let dims = q.dims().to_vec();
    let (bh, seq, d) = (dims[0] * dims[1], dims[2], dims[3]);
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (
        q.reshape([bh, seq, d]).unwrap(),
        k.reshape([bh, seq, d]).unwrap(),
        v.reshape([bh, seq, d]).unwrap(),
    );
    let mut out = Vec::with_capacity(bh * seq * d);
    for h in 0..bh {
        let qh = q.narrow(0, h, 1).unwrap().squeeze(0).unwrap();
        let kh = k.narrow(0, h, 1).unwrap().squeeze(0).unwrap();
        let vh = v.narrow(0, h, 1).unwrap().squeeze(0).unwrap();
        let s = qh
            .mul_scalar(scale)
            .unwrap()
            .matmul(&kh.t().unwrap())
            .unwrap();
        let p = s.softmax(-1).unwrap();
        out.extend(p.matmul(&vh).unwrap().to_vec().unwrap());
    }
    Tensor::from_vec(out, dims).unwrap()
}

fn attention_kind() -> &'static str {
    if cfg!(feature = "attention") {
        "fused Tensor::scaled_dot_product_attention"
    } else {
        "composite matmul+softmax per head"
    }
}

/// Runs implementation `imp` of `case` once; `None` if it has no such implementation.
fn runner<'a>(
    imp: &str,
    named: &NamedCase,
    inputs: &'a mut Inputs,
    threads: usize,
) -> Option<Box<dyn FnMut() + Send + 'a>> {
    match (imp, named.case, inputs) {
        (
            "ours",
            Case::Matmul {
                m,
                k,
                n,
                b_transposed,
            },
            Inputs::Matmul { a, b, c, c_at },
        ) => {
            let c = &mut c[*c_at..*c_at + m * n];
            let am = MatRef::row_major(a, m, k).unwrap();
            let bm = if b_transposed {
                MatRef::row_major(b, n, k).unwrap().t()
            } else {
                MatRef::row_major(b, k, n).unwrap()
            };
            // PEERS_KERNEL=avx2 or portable: the packed rungs with that micro-kernel
            // instead of the dispatching `gemm` (to compare kernels).
            match std::env::var("PEERS_KERNEL").ok().as_deref() {
                Some(name) => {
                    let kernel = Kernel::available()
                        .into_iter()
                        .find(|k| k.name().starts_with(name))
                        .unwrap_or_else(|| panic!("PEERS_KERNEL={name}: not on this CPU"));
                    Some(Box::new(move || {
                        parallel::gemm_with(kernel, threads, am, bm, c)
                    }))
                }
                None => Some(Box::new(move || gemm(am, bm, c))),
            }
        }
        (
            "gemm",
            Case::Matmul {
                m,
                k,
                n,
                b_transposed,
            },
            Inputs::Matmul { a, b, c, c_at },
        ) => {
            let c = &mut c[*c_at..*c_at + m * n];
            // (row stride, column stride) of B in elements.
            let (b_rs, b_cs) = if b_transposed { (1, k) } else { (n, 1) };
            let par = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            Some(Box::new(move || {
                assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
                // SAFETY: the three buffers hold m x k, k x n and m x n matrices with
                // the strides given (checked just above); dst is not read
                // (read_dst = false), so alpha is unused; beta = 1 scales A * B.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        b_cs as isize,
                        b_rs as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            }))
        }
        ("ours", Case::Conv { kernel, .. }, Inputs::Conv { x, w, bias }) => {
            let p = kernel / 2;
            Some(Box::new(move || {
                std::hint::black_box(x.conv2d(w, Some(bias), (1, 1), (p, p), (1, 1), 1).unwrap());
            }))
        }
        ("ours", Case::Attention { .. }, Inputs::Attention { q, k, v }) => {
            Some(Box::new(move || {
                std::hint::black_box(attention_ours(q, k, v));
            }))
        }
        _ => None,
    }
}

/// Calls per timed batch so that one batch lasts about `min_time` seconds (after one
/// untimed warm-up call: page faults, pool wake-up, caches), and the seconds of one
/// timed call.
fn calibrate(min_time: f64, f: &mut (dyn FnMut() + Send)) -> (usize, f64) {
    f();
    let t0 = Instant::now();
    f();
    let one = t0.elapsed().as_secs_f64();
    let iters = ((min_time / one.max(1e-9)).ceil() as usize).clamp(1, 100_000);
    (iters, one)
}

/// A call longer than this is timed in at most [`HEAVY_SAMPLES`] batches.
const HEAVY_SECONDS: f64 = 0.2;
const HEAVY_SAMPLES: usize = 3;

/// Seconds per call over one batch of `iters` calls.
fn time_batch(iters: usize, f: &mut (dyn FnMut() + Send)) -> f64 {
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    t0.elapsed().as_secs_f64() / iters as f64
}

struct Runner {
    pool: rayon::ThreadPool,
    threads: usize,
    cases: Vec<NamedCase>,
    cache: HashMap<&'static str, Inputs>,
}

impl Runner {
    fn new(threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        Runner {
            pool,
            threads,
            cases: cases(),
            cache: HashMap::new(),
        }
    }

    /// One JSON line per implementation in `imps` (those that have the case named
    /// `name`), timed interleaved: each of `samples` rounds times one batch of each,
    /// so a noisy moment hits them all. Only the latest case's inputs are kept.
    fn measure(&mut self, imps: &[&str], name: &str, samples: usize, min_time: f64) -> Vec<String> {
        let Some(named) = self.cases.iter().find(|c| c.name == name).copied() else {
            return Vec::new();
        };
        if !self.cache.contains_key(named.name) {
            self.cache.clear();
            self.cache.insert(named.name, build(named.case));
        }
        let threads = self.threads;
        let Some(inputs) = self.cache.get_mut(named.name) else {
            return Vec::new();
        };
        // Each implementation borrows the inputs in turn (a matmul writes its C).
        let mut best: Vec<(&str, f64, usize)> = Vec::new();
        for &imp in imps {
            if let Some(mut f) = runner(imp, &named, inputs, threads) {
                let (iters, one) = self.pool.install(|| calibrate(min_time, &mut *f));
                best.push((imp, one, iters));
            }
        }
        let heavy = best.iter().any(|&(_, one, _)| one > HEAVY_SECONDS);
        let samples = if heavy {
            samples.min(HEAVY_SAMPLES)
        } else {
            samples
        };
        for _ in 0..samples {
            for (imp, secs, iters) in best.iter_mut() {
                let mut f = runner(imp, &named, inputs, threads).unwrap();
                let t = self.pool.install(|| time_batch(*iters, &mut *f));
                *secs = secs.min(t);
            }
        }
        best.iter()
            .map(|(imp, secs, _)| {
                format!(
                    "{{\"case\": \"{}\", \"impl\": \"{imp}\", \"threads\": {threads}, \"seconds\": {secs:.6e}, \"gflops\": {:.2}}}",
                    named.name,
                    named.flops() / secs / 1e9
                )
            })
            .collect()
    }
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: cannot parse {v:?}"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("run");
    let threads: usize = arg(&args, "--threads", 1);
    let samples: usize = arg(&args, "--samples", 10);
    let min_time: f64 = arg(&args, "--min-time", 0.02);
    let only: String = arg(&args, "--only", String::new());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        "list" => {
            for c in cases() {
                let spec = match c.case {
                    Case::Matmul {
                        m,
                        k,
                        n,
                        b_transposed,
                    } => format!(
                        "\"kind\": \"matmul\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"b_transposed\": {b_transposed}"
                    ),
                    Case::Conv {
                        c_in,
                        c_out,
                        h,
                        w,
                        kernel,
                    } => format!(
                        "\"kind\": \"conv\", \"c_in\": {c_in}, \"c_out\": {c_out}, \"h\": {h}, \"w\": {w}, \"kernel\": {kernel}"
                    ),
                    Case::Attention {
                        batch,
                        heads,
                        seq,
                        d,
                    } => format!(
                        "\"kind\": \"attention\", \"batch\": {batch}, \"heads\": {heads}, \"seq\": {seq}, \"d\": {d}"
                    ),
                };
                writeln!(
                    out,
                    "{{\"case\": \"{}\", \"flops\": {:.0}, {spec}}}",
                    c.name,
                    c.flops()
                )
                .unwrap();
            }
        }
        "info" => {
            writeln!(
                out,
                "{{\"ours_kernel\": \"{}\", \"gemm_crate\": \"0.19 (features x86-v4, rayon)\", \"attention\": \"{}\"}}",
                Kernel::detect().name(),
                attention_kind()
            )
            .unwrap();
        }
        "run" => {
            let mut r = Runner::new(threads);
            for c in cases()
                .into_iter()
                .filter(|c| only.split('|').any(|o| c.name.contains(o)))
            {
                for line in r.measure(&["ours", "gemm"], c.name, samples, min_time) {
                    writeln!(out, "{line}").unwrap();
                }
                out.flush().unwrap();
            }
        }
        "serve" => {
            let mut r = Runner::new(threads);
            for line in std::io::stdin().lock().lines() {
                let line = line.unwrap();
                let parts: Vec<&str> = line.split('\t').collect();
                let [imp, name, samples, min_time] = parts[..] else {
                    panic!("serve: expected IMPL<TAB>CASE<TAB>SAMPLES<TAB>MIN_TIME, got {line:?}");
                };
                let reply = r
                    .measure(
                        &[imp],
                        name,
                        samples.parse().unwrap(),
                        min_time.parse().unwrap(),
                    )
                    .pop()
                    .unwrap_or_else(|| "null".to_string());
                writeln!(out, "{reply}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown command {other:?}: list, info, run or serve"),
    }
}
