//! Captions for the Fashion-MNIST model: deterministic, class-faithful, with the
//! requested share of empty prompts, and all within CLIP's 77 tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::clip::ClipTokenizer;
use diffusion::train::captions::{bare, caption, eval_prompt, CLASS_NAMES, SYNONYMS};
use tensor::random::WichmannHill;

#[test]
fn same_generator_state_gives_same_captions() {
    let draw = |seed| {
        let mut rng = WichmannHill::seed(seed);
        (0..50)
            .map(|i| caption(i % 10, &mut rng, 0.15).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(11), draw(11));
    assert_ne!(draw(11), draw(12));
}

#[test]
fn captions_name_their_class_and_empty_share_is_close_to_p() {
    let mut rng = WichmannHill::seed(5);
    let n = 4000;
    let mut empty = 0;
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..n {
        let label = i % 10;
        let c = caption(label, &mut rng, 0.15).unwrap();
        if c.is_empty() {
            empty += 1;
            continue;
        }
        assert!(
            SYNONYMS[label].iter().any(|s| c.contains(bare(s))),
            "caption {c:?} of class {label} names none of its synonyms"
        );
        distinct.insert(c);
    }
    let share = empty as f64 / n as f64;
    // Binomial(4000, 0.15): std 0.0056, so +-0.03 is over 5 sigma.
    assert!((share - 0.15).abs() < 0.03, "empty share {share}");
    assert!(
        distinct.len() > 150,
        "only {} distinct captions",
        distinct.len()
    );
    assert!(distinct.contains("a photo of an ankle boot"));
    assert!(distinct.contains("sneaker"));
}

#[test]
fn eval_prompts_and_bad_labels() {
    assert_eq!(eval_prompt(0).unwrap(), "a photo of a t-shirt");
    assert_eq!(eval_prompt(1).unwrap(), "a photo of a pair of trousers");
    assert_eq!(eval_prompt(8).unwrap(), "a photo of a bag");
    assert_eq!(CLASS_NAMES.len(), 10);
    assert!(caption(10, &mut WichmannHill::seed(0), 0.1).is_err());
    assert!(eval_prompt(10).is_err());
}

#[test]
fn every_caption_fits_in_77_tokens() {
    let tok = ClipTokenizer::embedded().unwrap();
    for syns in SYNONYMS {
        for s in syns {
            let text = format!("a black and white photo of {s} on a black background");
            let enc = tok.encode_padded(&text, 77).unwrap();
            assert!(!enc.truncated);
            assert_eq!(enc.ids.len(), 77);
        }
    }
}
