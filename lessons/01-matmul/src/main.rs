//! Lesson 01: time every version of the matmul ladder and print the table the README
//! quotes. Run with `cargo run --release -p lesson-01-matmul` (debug builds are
//! 10-50x slower and say nothing about real speed).

use std::time::{Duration, Instant};

use lesson_01_matmul::{
    matmul_broadcast, matmul_einsum, matmul_elementwise, matmul_loops, Matrix, LIBRARY_RUNGS,
};
use tensor::matmul::{simd::Kernel, MatRef};
use tensor::Result;

/// Best wall time of `f` over repeated runs within about `budget` (at least one run).
fn best_time(mut f: impl FnMut() -> Result<()>, budget: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut best = Duration::MAX;
    for _ in 0..50 {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
        if start.elapsed() > budget {
            break;
        }
    }
    Ok(best)
}

fn gflops(m: usize, k: usize, n: usize, t: Duration) -> f64 {
    2.0 * (m * k * n) as f64 / t.as_secs_f64() / 1e9
}

fn cell(m: usize, k: usize, n: usize, t: Duration) -> String {
    let ms = t.as_secs_f64() * 1e3;
    let time = if ms < 1.0 {
        format!("{:.1} us", ms * 1e3)
    } else {
        format!("{ms:.1} ms")
    };
    format!("{time} ({:.1} GFLOP/s)", gflops(m, k, n, t))
}

/// Largest |x - y| over the two matrices (0 means equal; `bits` says bit-identical).
fn compare(x: &Matrix, y: &Matrix) -> (f32, bool) {
    let (xf, yf) = (x.to_flat(), y.to_flat());
    let diff = xf
        .iter()
        .zip(&yf)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let bits = xf.iter().zip(&yf).all(|(a, b)| a.to_bits() == b.to_bits());
    (diff, bits)
}

type CourseFn = fn(&Matrix, &Matrix) -> Result<Matrix>;
type LibFn = Box<dyn Fn(MatRef<'_>, MatRef<'_>, &mut [f32])>;

/// The library's rungs, plus the SIMD rung with each slower micro-kernel this CPU
/// has (so the table shows what AVX-512 adds over AVX2, and AVX2 over plain Rust).
fn library_rungs() -> Vec<(String, LibFn)> {
    let mut rungs: Vec<(String, LibFn)> = Vec::new();
    for (name, rung) in LIBRARY_RUNGS {
        if name.starts_with("parallel") {
            for kernel in Kernel::available().into_iter().skip(1) {
                rungs.push((
                    format!("simd with the {} kernel", kernel.name()),
                    Box::new(move |a, b, c| tensor::matmul::simd::gemm_with(kernel, a, b, c)),
                ));
            }
        }
        rungs.push((name.to_string(), Box::new(rung)));
    }
    rungs
}

const COURSE: [(&str, CourseFn); 4] = [
    ("1 loops (Matrix, i,j,k)", matmul_loops),
    ("2 elementwise (row . col)", matmul_elementwise),
    ("3 broadcasting (row x B)", matmul_broadcast),
    ("4 einsum ik,kj->ij", matmul_einsum),
];

/// One table row per version for `m x k @ k x n`, each checked against version 1.
fn ladder(sizes: &[(usize, usize, usize)], budget: Duration) -> Result<Vec<Vec<String>>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let names = COURSE
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(library_rungs().into_iter().map(|(n, _)| format!("lib {n}")));
    for name in names {
        rows.push(vec![name]);
    }
    for &(m, k, n) in sizes {
        let a = Matrix::random(m, k, 1);
        let b = Matrix::random(k, n, 2);
        let reference = matmul_loops(&a, &b)?;
        let note = |row: &mut Vec<String>, t: Duration, c: &Matrix| {
            let (diff, bits) = compare(c, &reference);
            let eq = if bits {
                "=".to_string()
            } else {
                format!("~{diff:.0e}")
            };
            row.push(format!("{} {eq}", cell(m, k, n, t)));
        };
        for (row, (_, f)) in rows.iter_mut().zip(COURSE) {
            let mut out = Matrix::zeros(0, 0);
            let t = best_time(
                || {
                    out = f(&a, &b)?;
                    Ok(())
                },
                budget,
            )?;
            note(row, t, &out);
        }
        // Library rungs on flat buffers, converted once outside the timing.
        let (af, bf) = (a.to_flat(), b.to_flat());
        let am = MatRef::row_major(&af, m, k)?;
        let bm = MatRef::row_major(&bf, k, n)?;
        for (row, (_, rung)) in rows[COURSE.len()..].iter_mut().zip(library_rungs()) {
            let mut c = vec![0.0f32; m * n];
            let t = best_time(
                || {
                    rung(am, bm, &mut c);
                    Ok(())
                },
                budget,
            )?;
            note(row, t, &Matrix::from_flat(m, n, &c)?);
        }
    }
    Ok(rows)
}

fn print_table(header: &[String], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
    println!();
}

fn main() -> Result<()> {
    println!(
        "best micro-kernel: {}, cores: {} (only `lib parallel` uses more than one)",
        Kernel::detect().name(),
        cores()
    );
    println!("cells: best time over repeated runs (GFLOP/s = 2*m*k*n / time);");
    println!("'=' bit-identical to version 1, '~1e-6' largest difference from it\n");

    // The course's shapes: 5 MNIST images (5 x 784) times a 784 x 10 weight matrix.
    let budget = Duration::from_millis(300);
    let course = [(5, 784, 10)];
    let rows = ladder(&course, budget)?;
    print_table(&["version".into(), "5x784 @ 784x10".into()], &rows);

    let sizes = [128usize, 256, 512];
    let square: Vec<_> = sizes.iter().map(|&s| (s, s, s)).collect();
    let rows = ladder(&square, Duration::from_millis(600))?;
    let mut header = vec!["version".to_string()];
    header.extend(sizes.iter().map(|s| format!("N={s}")));
    print_table(&header, &rows);

    // The headline ratio: SIMD rung over the naive rung, one thread, N = 512.
    let n = 512;
    let (a, b) = (
        Matrix::random(n, n, 1).to_flat(),
        Matrix::random(n, n, 2).to_flat(),
    );
    let (am, bm) = (MatRef::row_major(&a, n, n)?, MatRef::row_major(&b, n, n)?);
    let mut c = vec![0.0f32; n * n];
    let mut time = |rung: lesson_01_matmul::Rung| {
        best_time(
            || {
                rung(am, bm, &mut c);
                Ok(())
            },
            Duration::from_secs(1),
        )
    };
    let naive = time(tensor::matmul::naive::gemm)?;
    let simd = time(tensor::matmul::simd::gemm)?;
    println!(
        "N=512, one thread: naive {:.1} GFLOP/s, simd {:.1} GFLOP/s: simd is {:.0}x faster",
        gflops(n, n, n, naive),
        gflops(n, n, n, simd),
        naive.as_secs_f64() / simd.as_secs_f64()
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
