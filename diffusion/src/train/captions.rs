//! Captions for Fashion-MNIST: each class label becomes a short prompt drawn from
//! templates and synonyms ("a photo of an ankle boot", "a boot", "sneaker", "a pair
//! of trousers", "a handbag"), and with probability `p_empty` the empty prompt, so
//! the text encoder also learns the unconditional embedding that classifier-free
//! guidance needs (as SD 1.x training dropped 10% of its captions).
//!
//! Deterministic: the same generator state gives the same caption.
//!
//! ```
//! use diffusion::train::captions::{caption, eval_prompt, CLASS_NAMES};
//! use tensor::random::WichmannHill;
//! let mut rng = WichmannHill::seed(3);
//! let c = caption(9, &mut rng, 0.0).unwrap();
//! assert!(c.contains("boot"));
//! assert_eq!(eval_prompt(9).unwrap(), "a photo of an ankle boot");
//! assert_eq!(CLASS_NAMES[7], "sneaker");
//! ```

use tensor::Rng;

use crate::error::{DiffusionError, Result};

/// The ten Fashion-MNIST classes, by label (0..9), as short names.
pub const CLASS_NAMES: [&str; 10] = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Noun phrases per class, each with its article (or none for plurals). The first
/// one is the class's canonical phrase, used by [`eval_prompt`].
pub const SYNONYMS: [&[&str]; 10] = [
    &[
        "a t-shirt",
        "a tee",
        "a tee shirt",
        "a top",
        "a t-shirt top",
    ],
    &[
        "a pair of trousers",
        "trousers",
        "pants",
        "a pair of pants",
        "jeans",
    ],
    &["a pullover", "a sweater", "a jumper", "a sweatshirt"],
    &["a dress", "a gown", "a summer dress", "a long dress"],
    &["a coat", "a jacket", "an overcoat", "a winter coat"],
    &["a sandal", "sandals", "a pair of sandals", "a flip-flop"],
    &["a shirt", "a button-up shirt", "a blouse", "a dress shirt"],
    &["a sneaker", "a trainer", "a running shoe", "sneakers"],
    &["a bag", "a handbag", "a purse", "a tote bag"],
    &["an ankle boot", "a boot", "boots", "a pair of boots"],
];

/// Caption templates; `{}` is a noun phrase with its article.
pub const TEMPLATES: [&str; 8] = [
    "{}",
    "a photo of {}",
    "a picture of {}",
    "a black and white photo of {}",
    "a grayscale image of {}",
    "{} on a black background",
    "a small photo of {}",
    "a product photo of {}",
];

/// The phrase without its leading article: "an ankle boot" -> "ankle boot".
pub fn bare(phrase: &str) -> &str {
    phrase
        .strip_prefix("a ")
        .or_else(|| phrase.strip_prefix("an "))
        .unwrap_or(phrase)
}

fn draw(rng: &mut impl Rng, n: usize) -> usize {
    ((rng.uniform() * n as f64) as usize).min(n.saturating_sub(1))
}

fn check_label(label: usize) -> Result<()> {
    if label >= CLASS_NAMES.len() {
        return Err(DiffusionError::invalid(
            "caption",
            format!("label {label} is not a Fashion-MNIST class (0..9)"),
        ));
    }
    Ok(())
}

/// A random caption for class `label`: the empty prompt with probability `p_empty`,
/// else a template filled with a synonym (one time in four without its article:
/// "sneaker", "boot").
pub fn caption(label: usize, rng: &mut impl Rng, p_empty: f64) -> Result<String> {
    check_label(label)?;
    if rng.uniform() < p_empty {
        return Ok(String::new());
    }
    let syns = SYNONYMS[label];
    let phrase = syns[draw(rng, syns.len())];
    let template = TEMPLATES[draw(rng, TEMPLATES.len())];
    let phrase = if template == "{}" && rng.uniform() < 0.25 {
        bare(phrase)
    } else {
        phrase
    };
    Ok(template.replace("{}", phrase))
}

/// The evaluation prompt of class `label`: "a photo of" + its canonical phrase.
pub fn eval_prompt(label: usize) -> Result<String> {
    check_label(label)?;
    Ok(format!("a photo of {}", SYNONYMS[label][0]))
}
