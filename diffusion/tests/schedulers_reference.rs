//! REFERENCE.md's scheduler numbers (from diffusers' sources), the from_config rules,
//! the CLI names and the errors, without fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::schedulers::{
    make_scheduler, scheduler_from_config, DDIMScheduler, LMSDiscreteScheduler, Scheduler,
    SchedulerConfig, SchedulerKind, TimestepSpacing,
};
use diffusion::Tensor;
use tensor::random::TorchGenerator;

fn sd15() -> SchedulerConfig {
    SchedulerConfig::stable_diffusion_v1()
}

#[test]
fn scaled_linear_alphas_cumprod_and_sigmas() {
    let s = NoiseSchedule::new(&sd15()).unwrap();
    assert!((s.alphas_cumprod[0] - 0.99915).abs() < 5e-7);
    assert!((s.alphas_cumprod[999] - 0.0046601).abs() < 5e-8);
    let sig = s.sigmas();
    assert!((sig[0] - 0.029168).abs() < 1e-6);
    assert!((sig[999] - 14.61465).abs() < 1e-4);
}

#[test]
fn lms_sigmas_70_and_15_steps() {
    let mut s = LMSDiscreteScheduler::new(&sd15()).unwrap();
    s.set_timesteps(70).unwrap();
    let t = s.timesteps();
    assert_eq!(t[0], 999.0);
    assert!((t[1] - 984.5217).abs() < 1e-4);
    let sig = s.sigmas();
    assert_eq!(sig.len(), 71);
    for (got, want) in sig
        .iter()
        .zip([14.6146, 13.3974, 12.3033, 11.3184, 10.4301])
    {
        assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    }
    for (got, want) in sig[68..].iter().zip([0.1174, 0.0292, 0.0]) {
        assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    }
    assert!((s.init_noise_sigma() - 14.6146).abs() < 1e-4);
    let x = Tensor::ones(vec![1, 4, 1, 1]);
    let scaled = s.scale_model_input(&x, 0).unwrap().to_vec().unwrap();
    assert!((scaled[0] - 0.068265).abs() < 1e-6, "{}", scaled[0]);

    s.set_timesteps(15).unwrap();
    let want = [
        14.6146, 9.6826, 6.6780, 4.7746, 3.5221, 2.6666, 2.0606, 1.6156, 1.2768, 1.0097, 0.7913,
        0.6056, 0.4397, 0.2780, 0.0292, 0.0,
    ];
    assert_eq!(s.sigmas().len(), want.len());
    for (got, want) in s.sigmas().iter().zip(want) {
        assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    }
}

#[test]
fn lms_coefficients_integrate_lagrange_polynomials() {
    let mut s = LMSDiscreteScheduler::new(&sd15()).unwrap();
    s.set_timesteps(15).unwrap();
    let sg: Vec<f64> = s.sigmas().iter().map(|&x| x as f64).collect();
    // order 2 at step 3: basis for sigma_3 is (tau - s2) / (s3 - s2); integral in closed form
    let (s2, s3, s4) = (sg[2], sg[3], sg[4]);
    let exact = ((s4 - s2).powi(2) - (s3 - s2).powi(2)) / (2.0 * (s3 - s2));
    assert!((s.lms_coefficient(2, 3, 0).unwrap() - exact).abs() < 1e-12);
    // the coefficients of one step sum to sigma_{t+1} - sigma_t (they integrate 1)
    let sum: f64 = (0..4).map(|j| s.lms_coefficient(4, 5, j).unwrap()).sum();
    assert!((sum - (sg[6] - sg[5])).abs() < 1e-12);
    assert!(s.lms_coefficient(4, 2, 0).is_err());
}

#[test]
fn dpm_timesteps_for_20_steps() {
    let mut s = make_scheduler(SchedulerKind::DpmSolverMultistep, &sd15()).unwrap();
    s.set_timesteps(20).unwrap();
    let mut want: Vec<f64> = vec![999.0];
    want.extend(
        (1..20)
            .map(|k| (1000 - 50 * k) as f64)
            .map(|t| if t > 500.0 { t - 1.0 } else { t }),
    );
    // np.linspace(0, 999, 21).round(): 999, 949.05 -> 949, ..., 549.45 -> 549, 499.5 -> 500 (even), 449.55 -> 450, ...
    assert_eq!(s.timesteps(), want.as_slice());
    assert_eq!(s.timesteps()[10], 500.0);
    assert_eq!(s.timesteps()[19], 50.0);
    assert_eq!(s.init_noise_sigma(), 1.0);
}

#[test]
fn ddim_previous_timestep_is_t_minus_t_over_n() {
    for spacing in [
        TimestepSpacing::Leading,
        TimestepSpacing::Linspace,
        TimestepSpacing::Trailing,
    ] {
        let cfg = SchedulerConfig {
            timestep_spacing: Some(spacing),
            ..sd15()
        };
        let mut s = DDIMScheduler::new(&cfg).unwrap();
        s.set_timesteps(30).unwrap();
        for &t in s.timesteps() {
            assert_eq!(s.prev_timestep(t as i64), t as i64 - 33);
        }
    }
}

#[test]
fn from_config_keeps_present_keys_and_uses_class_defaults_for_absent_ones() {
    // SD 1.5's published config (no timestep_spacing) -> Euler uses its own linspace
    let plain = SchedulerConfig::from_json(
        r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "trained_betas": null, "clip_sample": false}"#,
    )
    .unwrap();
    let mut e = make_scheduler(SchedulerKind::Euler, &plain).unwrap();
    e.set_timesteps(10).unwrap();
    assert_eq!(e.config().timestep_spacing, Some(TimestepSpacing::Linspace));
    assert_eq!(e.timesteps()[0], 999.0);
    assert!((e.init_noise_sigma() - 14.6146).abs() < 1e-4);
    // a re-saved config carries "timestep_spacing": "leading" -> Euler keeps it
    let mut resaved = plain.clone();
    resaved.timestep_spacing = Some(TimestepSpacing::Leading);
    let mut e = make_scheduler(SchedulerKind::Euler, &resaved).unwrap();
    e.set_timesteps(10).unwrap();
    assert_eq!(e.config().timestep_spacing, Some(TimestepSpacing::Leading));
    assert_eq!(e.timesteps()[0], 901.0);
    // leading: init_noise_sigma = sqrt(sigma_max^2 + 1), sigma_max at t = 901
    assert!(e.init_noise_sigma() > 8.0 && e.init_noise_sigma() < 14.0);
    // PNDM's set_alpha_to_one default is false, DDIM's true; the file's value wins
    let ddim = make_scheduler(SchedulerKind::Ddim, &plain).unwrap();
    assert_eq!(ddim.config().set_alpha_to_one, Some(false));
    let ddim = make_scheduler(SchedulerKind::Ddim, &SchedulerConfig::default()).unwrap();
    assert_eq!(ddim.config().set_alpha_to_one, Some(true));
    // the class named by the file
    let s = scheduler_from_config(&plain).unwrap();
    assert_eq!(s.name(), "PNDMScheduler");
    assert_eq!(s.config().class_name.as_deref(), Some("PNDMScheduler"));
}

#[test]
fn cli_names_round_trip_and_build() {
    for name in SchedulerKind::CLI_NAMES {
        let kind: SchedulerKind = name.parse().unwrap();
        assert_eq!(kind.to_string(), name);
        let mut s = make_scheduler(kind, &sd15()).unwrap();
        s.set_timesteps(10).unwrap();
        assert_eq!(s.order(), 1);
        assert!(!s.timesteps().is_empty());
    }
    assert!("dpm++3m".parse::<SchedulerKind>().is_err());
    let karras = make_scheduler(SchedulerKind::DpmSolverMultistepKarras, &sd15()).unwrap();
    assert!(karras.config().use_karras_sigmas);
}

#[test]
fn pndm_plms_repeats_the_first_timestep() {
    let mut s = make_scheduler(SchedulerKind::Pndm, &sd15()).unwrap();
    s.set_timesteps(10).unwrap();
    let want = [
        901.0, 801.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0,
    ];
    assert_eq!(s.timesteps(), want.as_slice());
}

#[test]
fn unsupported_options_and_bad_calls_are_errors() {
    let thresholding = SchedulerConfig {
        thresholding: true,
        ..sd15()
    };
    let err = make_scheduler(SchedulerKind::Ddim, &thresholding)
        .err()
        .unwrap();
    assert!(err.to_string().contains("thresholding"), "{err}");
    let mut s = make_scheduler(SchedulerKind::Euler, &sd15()).unwrap();
    assert!(s.set_timesteps(0).is_err());
    assert!(s.set_timesteps(1001).is_err());
    s.set_timesteps(5).unwrap();
    let x = Tensor::zeros(vec![1, 4, 2, 2]);
    let mut g = TorchGenerator::manual_seed(0);
    assert!(s.step(&x, 5, &x, &mut g).is_err());
    let y = Tensor::zeros(vec![1, 4, 2, 3]);
    assert!(s.step(&y, 0, &x, &mut g).is_err());
    let prk = SchedulerConfig {
        skip_prk_steps: false,
        ..sd15()
    };
    let mut p = make_scheduler(SchedulerKind::Pndm, &prk).unwrap();
    assert!(p.set_timesteps(3).is_err());
    assert!(
        SchedulerConfig::from_json(r#"{"_class_name": "UniPCMultistepScheduler"}"#)
            .unwrap()
            .kind()
            .is_err()
    );
    let mut d = make_scheduler(SchedulerKind::Ddim, &sd15()).unwrap();
    assert!(
        d.step(&x, 0, &x, &mut g).is_err(),
        "step before set_timesteps"
    );
}

#[test]
fn config_reads_a_scheduler_folder_file() {
    let dir = std::env::temp_dir().join(format!("schedulers_reference_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scheduler_config.json");
    std::fs::write(
        &path,
        r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++",
            "lambda_min_clipped": -Infinity, "solver_order": 2, "use_karras_sigmas": true,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#,
    )
    .unwrap();
    let cfg = SchedulerConfig::from_file(&path).unwrap();
    assert!(cfg.use_karras_sigmas && cfg.lambda_min_clipped.is_none());
    let mut s = scheduler_from_config(&cfg).unwrap();
    s.set_timesteps(20).unwrap();
    assert_eq!(s.timesteps()[0], 999.0);
    assert!(SchedulerConfig::from_file(&dir.join("missing.json")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
