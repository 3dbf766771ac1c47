#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The distilled sampler's arithmetic (`diffusion::distill::sampler`): the per-row DDIM
//! step is `DDIMScheduler::step` bit for bit, the grids halve, the paper's target makes
//! one student step land on the teacher's two-step result, and the truncated-SNR
//! weights.

use diffusion::distill::progressive::{halvings, RoundGrids};
use diffusion::distill::sampler::{
    ddim_step_rows, distill_scheduler_config, distill_target, truncated_snr_scale, DdimGrid,
};
use diffusion::schedulers::{make_scheduler, SchedulerKind};
use tensor::random::TorchGenerator;
use tensor::Tensor;

fn randn(seed: u64, shape: [usize; 4]) -> Tensor {
    TorchGenerator::manual_seed(seed).randn(shape).unwrap()
}

#[test]
fn per_row_ddim_step_is_the_scheduler_step_exactly() {
    let cfg = distill_scheduler_config();
    for n in [64usize, 16, 4, 1] {
        let grid = DdimGrid::new(&cfg, n).unwrap();
        let mut sched = make_scheduler(SchedulerKind::Ddim, &cfg).unwrap();
        sched.set_timesteps(n).unwrap();
        assert_eq!(
            grid.timesteps,
            sched
                .timesteps()
                .iter()
                .map(|&t| t as i64)
                .collect::<Vec<_>>()
        );
        for i in [0, n / 2, n - 1] {
            let z = randn(i as u64, [3, 4, 5, 7]);
            let e = randn(100 + i as u64, [3, 4, 5, 7]);
            let want = sched
                .step(&e, i, &z, &mut TorchGenerator::manual_seed(0))
                .unwrap()
                .prev_sample;
            let t = vec![grid.timesteps[i]; 3];
            let p = vec![grid.prev(i); 3];
            let got = ddim_step_rows(&grid, &e, &z, &t, &p).unwrap();
            assert_eq!(
                got.to_vec().unwrap(),
                want.to_vec().unwrap(),
                "n {n} step {i}"
            );
        }
    }
}

#[test]
fn rows_take_their_own_timesteps() {
    let grid = DdimGrid::new(&distill_scheduler_config(), 8).unwrap();
    let z = randn(1, [2, 1, 2, 2]);
    let e = randn(2, [2, 1, 2, 2]);
    let t = [grid.timesteps[0], grid.timesteps[7]];
    let p = [grid.prev(0), grid.prev(7)];
    let both = ddim_step_rows(&grid, &e, &z, &t, &p).unwrap();
    for r in 0..2 {
        let one = ddim_step_rows(
            &grid,
            &e.narrow(0, r, 1).unwrap(),
            &z.narrow(0, r, 1).unwrap(),
            &t[r..r + 1],
            &p[r..r + 1],
        )
        .unwrap();
        assert_eq!(
            both.narrow(0, r, 1).unwrap().to_vec().unwrap(),
            one.to_vec().unwrap()
        );
    }
}

#[test]
fn grids_halve_from_64_to_1() {
    assert_eq!(halvings(64, 1).unwrap(), vec![64, 32, 16, 8, 4, 2]);
    assert!(halvings(64, 5).is_err());
    assert!(halvings(64, 0).is_err());
    for n in [64, 32, 16, 8, 4, 2] {
        let g = RoundGrids::new(n).unwrap();
        assert_eq!(g.teacher.len(), n);
        assert_eq!(g.student.timesteps[0], 999);
    }
    // The last student step lands on x0 (alpha = 1, sigma = 0).
    let g = DdimGrid::new(&distill_scheduler_config(), 4).unwrap();
    assert_eq!(g.prev(3), -1);
    assert_eq!(g.alpha_sigma(-1).unwrap(), (1.0, 0.0));
}

#[test]
fn one_student_step_with_the_target_lands_on_the_teacher_result() {
    let cfg = distill_scheduler_config();
    for n in [64usize, 8, 2] {
        let grids = RoundGrids::new(n).unwrap();
        let sg = &grids.student;
        for j in [0, sg.len() - 1] {
            let z_t = randn(7 + j as u64, [2, 4, 3, 3]);
            let z_pp = randn(70 + j as u64, [2, 4, 3, 3]);
            let t = vec![sg.timesteps[j]; 2];
            let tpp = vec![sg.prev(j); 2];
            let (x, e) = distill_target(sg, &z_t, &z_pp, &t, &tpp).unwrap();
            // DDIMScheduler's own step with e~ gives z''; and its x0 is x~.
            let mut s = make_scheduler(SchedulerKind::Ddim, &cfg).unwrap();
            s.set_timesteps(n / 2).unwrap();
            let out = s
                .step(&e, j, &z_t, &mut TorchGenerator::manual_seed(0))
                .unwrap();
            let d = |a: &Tensor, b: &Tensor| {
                a.to_vec()
                    .unwrap()
                    .iter()
                    .zip(b.to_vec().unwrap())
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max)
            };
            // f32 round-off of dividing by alpha'' - (sigma''/sigma) alpha: 1e-4 relative.
            assert!(
                d(&out.prev_sample, &z_pp) < 2e-4,
                "n {n} j {j}: {}",
                d(&out.prev_sample, &z_pp)
            );
            assert!(d(&out.pred_original_sample.unwrap(), &x) < 2e-4);
        }
    }
}

#[test]
fn truncated_snr_weights() {
    let g = DdimGrid::new(&distill_scheduler_config(), 4).unwrap();
    let w = truncated_snr_scale(&g, &[999, 249, 0])
        .unwrap()
        .to_vec()
        .unwrap();
    let (a, s) = g.alpha_sigma(999).unwrap();
    assert!((w[0] - s / a).abs() < 1e-6 && w[0] > 14.0); // SNR ~ 0.0047 at t = 999
    assert_eq!(w[2], 1.0); // high SNR: weight 1
    assert!(w.iter().all(|&v| v >= 1.0));
}
