//! `cargo run --release -p lesson-08-clip`: trains BPE on a toy corpus step by step,
//! rebuilds CLIP's tokenizer from its merges and compares it with the library's, then
//! opens the tiny text encoder of `fixtures/tiny-sd` (causal mask, quick_gelu, final
//! layer norm). Prints every number the README quotes; writes `out/08-attention.png`
//! (layer 0's attention probabilities, one panel per head).

use diffusion::clip::text_model::causal_mask;
use diffusion::clip::ClipTokenizer;
use lesson_08_clip::bpe::{bytes_to_unicode, clip_merges, train_bpe, BpeEncoder, ClipBpe};
use lesson_08_clip::encoder::{
    forward_with_mask, layer0_attention_by_hand, layer0_attention_library, load_tiny, max_abs_diff,
    no_mask, quick_gelu,
};
use lesson_08_clip::TOY_CORPUS;
use tensor::Tensor;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

const PROMPTS: [&str; 6] = [
    "a photo of a cat",
    "a photograph of an astronaut riding a horse",
    "",
    "A  Photo of a CAT!!",
    "café au lait, 42 cups",
    "qwxzjv's lowest newest widest",
];

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .unwrap_or_else(|| "out".to_string());
    std::fs::create_dir_all(&out)?;

    // 1. BPE training, step by step.
    println!("BPE on {TOY_CORPUS:?}:");
    let merges = train_bpe(&TOY_CORPUS, 10);
    for (r, m) in merges.iter().enumerate() {
        println!(
            "  merge {r}: {:>6} + {:<8} ({} times)",
            m.left, m.right, m.count
        );
    }
    let pairs: Vec<(String, String)> = merges
        .iter()
        .map(|m| (m.left.clone(), m.right.clone()))
        .collect();
    let enc = BpeEncoder::new(&pairs);
    for w in ["lowest", "newer", "wider", "low"] {
        println!("  {w:8} -> {:?}", enc.encode_word(w));
    }

    // 2. CLIP's vocabulary.
    let table = bytes_to_unicode();
    let lib_table = diffusion::clip::bpe::bytes_to_unicode();
    println!(
        "bytes_to_unicode: 'a' -> {:?}, ' ' -> {:?}, '\\n' -> {:?}, 0xAD -> {:?}; equal to the library's: {}",
        table[b'a' as usize], table[b' ' as usize], table[b'\n' as usize], table[0xad],
        table.as_slice() == lib_table.as_slice()
    );
    let merges = clip_merges()?;
    let clip = ClipBpe::new(&merges);
    println!(
        "CLIP: {} merges, vocabulary {} ids; first merges {:?}, last {:?}",
        merges.len(),
        clip.vocab.len(),
        &merges[..3],
        merges.last()
    );
    for t in ["a", "a</w>", "cat</w>", "th", "<|endoftext|>"] {
        println!("  id of {t:?} = {:?}", clip.vocab.get(t));
    }
    let lib = ClipTokenizer::embedded()?;
    for p in PROMPTS {
        let mine = clip.encode(p)?;
        let agree = clip.encode_padded(p, 77)? == lib.encode_padded(p, 77)?.ids;
        println!("  {p:?} -> {mine:?} (library agrees on the 77 padded ids: {agree})");
        let words: Vec<String> = mine[1..mine.len() - 1]
            .iter()
            .filter_map(|&i| lib.id_to_token(i).map(String::from))
            .collect();
        println!("      tokens {words:?}");
    }

    // 3. The text encoder.
    let model = load_tiny()?;
    let c = &model.config;
    println!(
        "tiny text encoder: D = {}, {} layers, {} heads, MLP {}, act {:?}, vocab {}, positions {}",
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.intermediate_size,
        c.hidden_act,
        c.vocab_size,
        c.max_position_embeddings
    );
    let cat = lib.encode_padded("a photo of a cat", 77)?.ids;
    let dog = lib.encode_padded("a photo of a dog", 77)?.ids;
    let both: Vec<u32> = cat.iter().chain(&dog).copied().collect();
    let h = autodiff::no_grad(|| model.forward(&both, 2))?
        .value()
        .clone();
    println!("last_hidden_state {:?}", h.dims());
    let per_pos = |h: &Tensor| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let v = h.to_vec()?;
        let d = c.hidden_size;
        let n = 77 * d;
        Ok((0..77)
            .map(|p| max_abs_diff(&v[p * d..(p + 1) * d], &v[n + p * d..n + (p + 1) * d]))
            .collect())
    };
    let diffs = per_pos(&h)?;
    println!(
        "causal: max |cat - dog| per position 0..8: {:?}",
        &diffs[..8]
    );
    let open = forward_with_mask(&model, &both, 2, &no_mask(77)?)?;
    let od = per_pos(&open)?;
    println!("no mask: max |cat - dog| per position 0..8: {:?}", &od[..8]);
    let hand = forward_with_mask(&model, &both, 2, &causal_mask(77)?)?;
    println!(
        "step by step with causal_mask vs model.forward: max |diff| {:e}",
        max_abs_diff(&hand.to_vec()?, &h.to_vec()?)
    );
    let ids = &cat[..8];
    let (probs, by_hand) = layer0_attention_by_hand(&model, ids)?;
    let libo = layer0_attention_library(&model, ids)?;
    println!(
        "layer 0 attention by hand vs library: max |diff| {:e}; head 0 row 2 {:?}; sum above the diagonal {}",
        max_abs_diff(&by_hand.to_vec()?, &libo.to_vec()?),
        &probs[2 * 8..3 * 8],
        (0..c.num_attention_heads * 64).filter(|k| k % 8 > (k / 8) % 8).map(|k| probs[k]).sum::<f32>()
    );
    let xs: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).collect();
    let t = Tensor::from_vec(xs.clone(), [xs.len()])?;
    let lib_q = t.quick_gelu()?.to_vec()?;
    let gelu = t.gelu()?.to_vec()?;
    let mine: Vec<f32> = xs.iter().map(|&x| quick_gelu(x)).collect();
    let worst = xs
        .iter()
        .zip(mine.iter().zip(&gelu))
        .map(|(x, (q, g))| ((q - g).abs(), *x))
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    println!(
        "quick_gelu: by hand vs tensor op max |diff| {:e}; vs erf GELU on [-6, 6] max |diff| {:.4} at x = {:.2}; quick_gelu(1) = {:.4}, gelu(1) = {:.4}",
        max_abs_diff(&mine, &lib_q), worst.0, worst.1, quick_gelu(1.0), gelu[700]
    );
    let ln = &model.final_layer_norm;
    let w = ln.weight.as_ref().map(|p| p.value().to_vec()).transpose()?;
    let b = ln.bias.as_ref().map(|p| p.value().to_vec()).transpose()?;
    let v = h.to_vec()?;
    let d = c.hidden_size;
    let (mut worst_m, mut worst_v) = (0f32, 0f32);
    for row in v.chunks(d) {
        let u: Vec<f32> = row
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let g = w.as_ref().map_or(1.0, |w| w[i]);
                let bb = b.as_ref().map_or(0.0, |b| b[i]);
                (x - bb) / g
            })
            .collect();
        let m = u.iter().sum::<f32>() / d as f32;
        let var = u.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / d as f32;
        worst_m = worst_m.max(m.abs());
        worst_v = worst_v.max((var - 1.0).abs());
    }
    println!("final layer norm: over all 154 positions, (h - bias) / weight has |mean| <= {worst_m:.2e}, |var - 1| <= {worst_v:.2e}");

    // Attention picture: 4 heads side by side, each 8x8 scaled up 16x.
    let heads = c.num_attention_heads;
    let s = 16;
    let mut img = vec![0f32; 8 * s * heads * (8 * s + 4)];
    let width = heads * (8 * s + 4);
    for hd in 0..heads {
        for y in 0..8 * s {
            for x in 0..8 * s {
                img[y * width + hd * (8 * s + 4) + x] = probs[hd * 64 + (y / s) * 8 + x / s].sqrt();
            }
        }
    }
    tensor::io::image::save_image_unit(
        format!("{out}/08-attention.png"),
        &Tensor::from_vec(img, [1, 8 * s, width])?,
    )?;
    println!("wrote {out}/08-attention.png");
    Ok(())
}
