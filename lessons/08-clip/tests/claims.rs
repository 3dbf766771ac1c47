//! One test per claim of `lessons/08-clip/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use diffusion::clip::text_model::causal_mask;
use diffusion::clip::{ClipTextModel, ClipTokenizer};
use lesson_08_clip::bpe::{bytes_to_unicode, clip_merges, train_bpe, BpeEncoder, ClipBpe};
use lesson_08_clip::encoder::{
    forward_with_mask, layer0_attention_by_hand, layer0_attention_library, load_tiny, max_abs_diff,
    no_mask, quick_gelu,
};
use lesson_08_clip::TOY_CORPUS;
use tensor::Tensor;

fn clip() -> &'static ClipBpe {
    static C: OnceLock<ClipBpe> = OnceLock::new();
    C.get_or_init(|| ClipBpe::new(&clip_merges().unwrap()))
}

fn model() -> &'static ClipTextModel {
    static M: OnceLock<ClipTextModel> = OnceLock::new();
    M.get_or_init(|| load_tiny().unwrap())
}

fn padded(p: &str) -> Vec<u32> {
    clip().encode_padded(p, 77).unwrap()
}

#[test]
fn claim_1_bpe_training_merges_the_most_frequent_pair() {
    let merges = train_bpe(&TOY_CORPUS, 10);
    let got: Vec<(&str, &str, usize)> = merges
        .iter()
        .map(|m| (m.left.as_str(), m.right.as_str(), m.count))
        .collect();
    assert_eq!(
        got[..4],
        [
            ("e", "s", 9),
            ("es", "t</w>", 9),
            ("l", "o", 7),
            ("e", "w", 6)
        ]
    );
    assert_eq!(got[6], ("lo", "w</w>", 5));
    assert_eq!(merges.len(), 10);
    // Counts never increase: each merge is the most frequent pair left.
    assert!(merges.windows(2).all(|w| w[0].count >= w[1].count));
    let pairs: Vec<(String, String)> = merges
        .iter()
        .map(|m| (m.left.clone(), m.right.clone()))
        .collect();
    let enc = BpeEncoder::new(&pairs);
    assert_eq!(enc.encode_word("low"), ["low</w>"]);
    // An unseen word splits into learned pieces; word-final "low</w>" is not "low".
    assert_eq!(enc.encode_word("lowest"), ["lo", "w", "est</w>"]);
    assert_eq!(enc.encode_word("newest"), ["newest</w>"]);
    assert_eq!(enc.encode_word("wider"), ["w", "i", "d", "e", "r</w>"]);
    // Training stops when every word is one symbol: 13 merges for the toy corpus.
    assert_eq!(train_bpe(&TOY_CORPUS, 100).len(), 13);
}

#[test]
fn claim_2_bytes_become_256_printable_characters() {
    let t = bytes_to_unicode();
    assert_eq!(t.len(), 256);
    let same = (0..256).filter(|&b| t[b] as u32 == b as u32).count();
    assert_eq!(same, 188);
    let moved: Vec<u32> = (0..256)
        .filter(|&b| t[b] as u32 != b as u32)
        .map(|b| t[b] as u32)
        .collect();
    assert_eq!(moved, (0x100..0x144).collect::<Vec<u32>>()); // 68 code points, in byte order
    assert_eq!(
        (t[b'a' as usize], t[b' ' as usize], t[b'\n' as usize]),
        ('a', 'Ġ', 'Ċ')
    );
    let mut distinct = t.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 256); // reversible
    assert_eq!(
        t.as_slice(),
        diffusion::clip::bpe::bytes_to_unicode().as_slice()
    );
}

#[test]
fn claim_3_clips_vocabulary_is_bytes_bytes_with_eow_merges_specials() {
    let merges = clip_merges().unwrap();
    assert_eq!(merges.len(), 48_894);
    assert_eq!(merges[0], ("i".to_string(), "n".to_string()));
    assert_eq!(merges[1], ("t".to_string(), "h".to_string()));
    let c = clip();
    assert_eq!(c.vocab.len(), 256 + 256 + 48_894 + 2);
    let id = |t: &str| c.vocab[t];
    assert_eq!(id("!"), 0);
    assert_eq!(id("a"), 64);
    assert_eq!(id("a</w>"), 320); // 256 + 64
    assert_eq!(id("in"), 512); // the first merge
    assert_eq!(id("th"), 513);
    assert_eq!(id("cat</w>"), 2368);
    assert_eq!(id("<|startoftext|>"), 49406);
    assert_eq!(id("<|endoftext|>"), 49407);
    let lib = ClipTokenizer::embedded().unwrap();
    for t in ["a", "a</w>", "in", "cat</w>", "photo</w>", "astronaut</w>"] {
        assert_eq!(lib.token_to_id(t), Some(id(t)), "{t}");
    }
}

#[test]
fn claim_4_the_scratch_tokenizer_agrees_with_the_library() {
    assert_eq!(
        clip().encode("a photo of a cat").unwrap(),
        [49406, 320, 1125, 539, 320, 2368, 49407]
    );
    assert_eq!(
        clip()
            .encode("a photograph of an astronaut riding a horse")
            .unwrap(),
        [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    );
    assert_eq!(clip().encode("").unwrap(), [49406, 49407]);
    assert_eq!(
        clip().encode("A  Photo of a CAT!!").unwrap(),
        [49406, 320, 1125, 539, 320, 2368, 748, 49407]
    );
    assert_eq!(
        clip().word_tokens("qwxzjv"),
        ["q", "wx", "z", "jv</w>"] // a rare word: 4 pieces
    );
    let long = "a very long prompt about a cat ".repeat(12);
    let lib = ClipTokenizer::embedded().unwrap();
    for p in [
        "a photo of a cat",
        "a photograph of an astronaut riding a horse",
        "",
        "A  Photo of a CAT!!",
        "café au lait, 42 cups",
        "qwxzjv's lowest newest widest",
        "Ünïcödé ☃ emoji 🐱 and tabs\tand\nnewlines",
        long.as_str(),
    ] {
        let mine = padded(p);
        assert_eq!(mine.len(), 77);
        assert_eq!(mine, lib.encode_padded(p, 77).unwrap().ids, "{p:?}");
    }
    // 84 content tokens truncated to 75: the last id before padding is not EOS.
    assert_eq!(padded(&long)[76], 49407);
    assert_ne!(padded(&long)[75], 49407);
}

#[test]
fn claim_5_embeddings_are_token_plus_position_rows() {
    let m = model();
    assert_eq!(m.config.hidden_size, 32);
    let ids = padded("a photo of a cat");
    let e = autodiff::no_grad(|| m.embeddings.forward(&ids, 1, 77))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let tok = m
        .embeddings
        .token_embedding
        .weight
        .value()
        .to_vec()
        .unwrap();
    let pos = m
        .embeddings
        .position_embedding
        .weight
        .value()
        .to_vec()
        .unwrap();
    assert_eq!(tok.len(), 49_408 * 32);
    assert_eq!(pos.len(), 77 * 32);
    let d = 32;
    for (p, &id) in ids.iter().enumerate() {
        for c in 0..d {
            let want = tok[id as usize * d + c] + pos[p * d + c];
            assert!((e[p * d + c] - want).abs() <= 1e-7);
        }
    }
    // Same token, different position: different vectors (position 1 and 4 are "a").
    assert_eq!(ids[1], ids[4]);
    assert!(max_abs_diff(&e[d..2 * d], &e[4 * d..5 * d]) > 1e-3);
    let both: Vec<u32> = ids
        .iter()
        .chain(&padded("a photo of a dog"))
        .copied()
        .collect();
    let h = autodiff::no_grad(|| m.forward(&both, 2)).unwrap();
    assert_eq!(h.dims(), &[2, 77, 32]);
}

/// Max |row0 - row1| at each of the 77 positions of a (2, 77, D) batch.
fn per_position(h: &Tensor) -> Vec<f32> {
    let v = h.to_vec().unwrap();
    let d = h.dims()[2];
    let n = 77 * d;
    (0..77)
        .map(|p| max_abs_diff(&v[p * d..(p + 1) * d], &v[n + p * d..n + (p + 1) * d]))
        .collect()
}

#[test]
fn claim_6_the_causal_mask_hides_later_tokens() {
    let m = model();
    let both: Vec<u32> = padded("a photo of a cat")
        .into_iter()
        .chain(padded("a photo of a dog"))
        .collect();
    let h = autodiff::no_grad(|| m.forward(&both, 2))
        .unwrap()
        .value()
        .clone();
    let d = per_position(&h);
    // Positions 0..=4 (start, "a photo of a") are bit-identical; 5 is cat vs dog.
    assert!(d[..5].iter().all(|&x| x == 0.0), "{:?}", &d[..6]);
    assert!(d[5] > 1.0, "{}", d[5]); // measured 2.43
    assert!(d[6..].iter().all(|&x| x > 0.01)); // everything after sees the change
                                               // The step-by-step forward with the same mask is the model, exactly.
    let by_hand = forward_with_mask(m, &both, 2, &causal_mask(77).unwrap()).unwrap();
    assert_eq!(by_hand.to_vec().unwrap(), h.to_vec().unwrap());
    // Without the mask, earlier positions see the later word too.
    let open = per_position(&forward_with_mask(m, &both, 2, &no_mask(77).unwrap()).unwrap());
    assert!(open[..5].iter().all(|&x| x > 0.01), "{:?}", &open[..5]); // measured >= 0.024
    let mask = causal_mask(3).unwrap().to_vec().unwrap();
    let ni = f32::NEG_INFINITY;
    assert_eq!(mask, [0.0, ni, ni, 0.0, 0.0, ni, 0.0, 0.0, 0.0]);
}

#[test]
fn claim_7_attention_by_hand_matches_the_library() {
    let m = model();
    let ids = &padded("a photo of a cat")[..8];
    let (probs, out) = layer0_attention_by_hand(m, ids).unwrap();
    let heads = m.config.num_attention_heads;
    assert_eq!(probs.len(), heads * 64);
    for h in 0..heads {
        assert_eq!(probs[h * 64], 1.0); // position 0 can only attend to itself
        for i in 0..8 {
            let row = &probs[(h * 8 + i) * 8..(h * 8 + i + 1) * 8];
            assert!(row[i + 1..].iter().all(|&p| p == 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
    let lib = layer0_attention_library(m, ids).unwrap();
    assert_eq!(lib.dims(), &[1, 8, 32]);
    let diff = max_abs_diff(&out.to_vec().unwrap(), &lib.to_vec().unwrap());
    assert!(diff < 1e-5, "{diff}"); // measured 4.8e-7: loops vs flash attention
}

#[test]
fn claim_8_quick_gelu_is_close_to_gelu() {
    let xs: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).collect();
    let t = Tensor::from_vec(xs.clone(), [xs.len()]).unwrap();
    let lib_quick = t.quick_gelu().unwrap().to_vec().unwrap();
    let gelu = t.gelu().unwrap().to_vec().unwrap();
    let mine: Vec<f32> = xs.iter().map(|&x| quick_gelu(x)).collect();
    assert!(max_abs_diff(&mine, &lib_quick) < 1e-6);
    let (worst, at) = xs
        .iter()
        .zip(mine.iter().zip(&gelu))
        .map(|(x, (q, g))| ((q - g).abs(), *x))
        .fold((0.0f32, 0.0f32), |a, b| if b.0 > a.0 { b } else { a });
    assert!((worst - 0.0203).abs() < 5e-4, "{worst}");
    assert!((at + 2.27).abs() < 0.02, "{at}");
    assert!((quick_gelu(1.0) - 0.8458).abs() < 1e-4);
    assert!((gelu[700] - 0.8413).abs() < 1e-4);
    assert!(matches!(m_act(), nn::Activation::QuickGELU));
}

fn m_act() -> nn::Activation {
    model().config.hidden_act.activation()
}

#[test]
fn claim_9_the_final_layer_norm_standardises_each_position() {
    let m = model();
    let ids = padded("a photo of a cat");
    let h = autodiff::no_grad(|| m.forward(&ids, 1))
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let ln = &m.final_layer_norm;
    let w = ln.weight.as_ref().unwrap().value().to_vec().unwrap();
    let b = ln.bias.as_ref().unwrap().value().to_vec().unwrap();
    for row in h.chunks(32) {
        let u: Vec<f32> = row
            .iter()
            .enumerate()
            .map(|(i, &x)| (x - b[i]) / w[i])
            .collect();
        let mean = u.iter().sum::<f32>() / 32.0;
        let var = u.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 32.0;
        assert!(mean.abs() < 1e-6, "{mean}");
        // eps = 1e-5 makes var = 1 / (1 + 1e-5 / var_in); measured within 2.2e-6.
        assert!((var - 1.0).abs() < 2e-5, "{var}");
    }
}
