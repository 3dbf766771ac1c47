"""Fixture group `clip`: CLIP tokenizer ids and a tiny CLIPTextModel (transformers).

Writes
- fixtures/clip_tokenizer.json: a corpus of prompts and the ids transformers'
  CLIPTokenizer gives them under three tokenizer folders that share one vocabulary
  (built from diffusion/assets/bpe_simple_vocab_16e6.txt.gz as OpenAI/HF do):
  `base` (vocab.json + merges.txt only), `sd1` (SD 1.x's tokenizer_config.json and
  special_tokens_map.json) and `sd2` (SD 2.x's: pad token "!"); the config files'
  text is stored too, so the Rust test can rebuild the folders.
- fixtures/tiny-sd/text_encoder/{config.json, model.safetensors}: a random CLIPTextModel
  (hidden 32, 2 layers, 4 heads, MLP 37, vocab 49408, 77 positions, quick_gelu) stored as
  float16, plus an int64 `position_ids` buffer as old SD checkpoints have.
- fixtures/clip_text_model.safetensors: last_hidden_state (float32, computed in float32
  from the float16-rounded weights) for prompts with the quick_gelu config and with a
  gelu config (SD 2-like, pad "!"), clip_skip 1, and textual inversion.
- fixtures/clip_learned_embeds.safetensors / clip_learned_embeds_multi.safetensors:
  diffusers-format textual-inversion files (`{"<cat-toy>": (32,)}`, `{"<style>": (3, 32)}`).

Run: /work/venv/bin/python scripts/gen_fixtures.py --only clip
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
BPE = ROOT / "diffusion" / "assets" / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_vocab(dir: Path) -> None:
    """vocab.json + merges.txt exactly as OpenAI's SimpleTokenizer builds its vocabulary."""
    lines = gzip.open(BPE).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    with open(dir / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(" ".join(m) + "\n")


def added(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def config_files(pad) -> dict[str, str]:
    """tokenizer_config.json and special_tokens_map.json as in the SD 1.5 / SD 2.1 repos
    (SD 2.x: the config still says <|endoftext|>, the special tokens map says "!")."""
    cfg = {
        "add_prefix_space": False,
        "bos_token": added("<|startoftext|>"),
        "do_lower_case": True,
        "eos_token": added("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": "tokenizer",
        "pad_token": "<|endoftext|>",
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": added("<|endoftext|>"),
    }
    special = {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"), "pad_token": pad, "unk_token": added("<|endoftext|>")}
    return {"tokenizer_config.json": json.dumps(cfg, indent=2), "special_tokens_map.json": json.dumps(special, indent=2)}


SD_PROMPTS = [
    "a photo of a cat",
    "a photograph of an astronaut riding a horse",
    "A fantasy landscape, trending on artstation",
    "portrait of a young woman, highly detailed, digital painting, artstation, concept art, sharp focus, illustration, art by greg rutkowski and alphonse mucha",
    "a painting of a fox sitting in a field at sunrise in the style of Claude Monet",
    "an oil painting of a corgi wearing a party hat",
    "cyberpunk city at night, neon lights, rain, 8k, unreal engine",
    "(masterpiece:1.2), best quality, [blurry], ((detailed eyes))",
    "a red cube on top of a blue sphere",
    "Mount Fuji in winter, ukiyo-e",
    "low poly 3D render of a tree, isometric",
    "a bowl of ramen, food photography, 50mm f/1.8",
    "studio ghibli style village by the sea",
    "a teddy bear on a skateboard in times square",
    "an armchair in the shape of an avocado",
    "a sign that says 'Deep Learning'",
    "pixel art of a knight fighting a dragon, 16-bit",
    "macro shot of a dew drop on a leaf; bokeh",
    "Black and white photo of New York, 1920s",
    "astronaut   riding\ta horse\non mars",
    "blurry, lowres, bad anatomy, extra fingers, watermark",
    "ugly, deformed, disfigured",
    "A DSLR photo of a dog wearing sunglasses!!!",
    "chibi anime girl with cat ears ^_^",
    "watercolor: a lighthouse @ dusk #seascape",
    "logo for a company called 'AI & Co.'",
    "infographic, 10 steps to success, 100% clean",
    "the year 2049, price $19.99, 3:45pm, 1,000,000 people",
]

EDGE_PROMPTS = [
    "", " ", "   ", "\t", "\n", "\r\n", "\t\n \r", "a", "A", "I", "!", "?", ".", "...", "a  b", "a\n\nb", " leading", "trailing ",
    "hello, world!", "what?!", "wow!!! amazing!", "!important", "a!b!c", "hello ! world!!",
    "don't", "DON'T", "it's", "It'S", "we'll", "they're", "you've", "I'm", "I'd", "o'clock", "rock'n'roll",
    "'s alone", "'t", "it''s", "dogs'", "''quoted''", "'", "''", "'re'", "'ve'm", "l'amour", "'ll'd'", "’s curly apostrophe",
    '"double quotes"', "`backtick`", "~tilde~", "a_b_c", "x^2 + y^2 = z^2", "a/b\\c|d", "{a|b}", "<tag>", "a->b=>c",
    "#hashtag @user", "100% cotton", "$5.99", "e-mail", "c++", "C#", "node.js", "www.example.com/path?q=1&x=2",
    "1,000,000", "3.14159", "2023-01-01", "12:30pm", "1st 2nd 3rd 4th", "007", "0", "1234567890", "a1b2c3",
    "٣٤٥ arabic digits", "Ⅻ roman numeral", "½ ¼ ² ³", "①②③", "⁵", "१२३",
    "café naïve résumé", "cafe\u0301", "e\u0301", "\u0301", "a\u0308", "ÅNGSTRÖM", "Ångström", "straße STRASSE ẞ",
    "İstanbul", "ıi", "ΟΔΥΣΣΕΥΣ", "Ὀδυσσεύς", "σς Σ", "Привет, мир", "ЁЛКА", "日本語のテキスト", "中文提示词，一只猫", "東京タワー",
    "한국어 문장", "ภาษาไทย", "עברית", "العربية", "हिन्दी", "Ελληνικά", "Ꭰ Cherokee", "ǅ ǆ ǄENTER",
    "🐱🐶", "a cat 🐱 and a dog 🐶", "👩‍👩‍👧 family", "🇫🇷 flag", "❤️", "✨sparkles✨", "😀😃😄😁", "🤖 robot",
    "a\u200bb", "a\u200db", "\ufeffbom", "\u00adsoft\u00adhyphen", "ﬁnance ﬂ", "ＡＢＣ１２３ full width", "Ｈｅｌｌｏ",
    "\x00\x01\x7f control", "a\x1cb\x1dc\x1ed\x1fe", "x\x0by\x0cz", "nbsp\u00a0here", "ideographic\u3000space",
    "line\u2028sep", "para\u2029sep", "nel\u0085x", "ogham\u1680x", "em\u2003space", "narrow\u202fnbsp", "mvs\u180ex",
    "<|startoftext|>", "<|endoftext|>", "<|startoftext|>hi<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>",
    "<|STARTOFTEXT|>", "<|EndOfText|> x", "<|startoftext|", "|endoftext|>", "< |endoftext| >", "<|endoftext|>!", "!<|startoftext|>!",
    "the <|endoftext|> end", "<|ENDOFTEXT|>|<|STARTOFTEXT|>",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "zzzzzz", "qwxzjv", "ab" * 40, "lol" * 30,
]


def long_prompts() -> list[str]:
    base = "a highly detailed matte painting of a castle on a hill, volumetric light, dramatic clouds, by Greg Rutkowski and Thomas Kinkade, "
    return [
        "a " * 74,
        "a " * 75,
        "a " * 76,
        "a " * 77,
        ("a " * 75).strip() + " cat",
        base * 3,
        (base * 2) + "ending words that get cut off",
        "word, " * 60,
        "🐱" * 40,
        " ".join(str(i) for i in range(100)),
        "!" * 200,
        "超長い日本語のプロンプト" * 10,
        "🐱 " * 80,
        "(worst quality, low quality:1.4), " * 8,
        "It's a dog's life; isn't it? " * 12,
    ]


WORDS = (
    "cat dog astronaut horse castle forest river neon cyberpunk portrait landscape detailed painting photo "
    "artstation octane render 4k 8k cinematic lighting golden hour bokeh sharp focus by greg rutkowski "
    "mucha trending masterpiece quality lowres watermark anime manga sketch watercolor oil canvas glass "
    "café naïve Zürich São Paulo東京 北京 서울 москва ñandú smörgåsbord fjord piñata jalapeño"
).split()
SEPS = [" ", "  ", ", ", ",", ". ", "; ", " - ", "\n", "\t", " | ", "!", "?", "...", " & ", "/", " (", ") ", "'s ", "'t ", " 2 ", "3d ", " 🙂 ", "\u00a0"]


def generated_prompts(n: int) -> list[str]:
    rng = random.Random(1234)
    out = []
    for _ in range(n):
        k = rng.randint(1, 14)
        parts = []
        for _ in range(k):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.15:
                w = w.upper()
            elif r < 0.3:
                w = w.capitalize()
            elif r < 0.35:
                w = w + str(rng.randint(0, 999))
            parts.append(w)
            parts.append(rng.choice(SEPS))
        if rng.random() < 0.2:
            parts.insert(0, " " * rng.randint(1, 3))
        if rng.random() < 0.1:
            parts.append("<|endoftext|>")
        out.append("".join(parts))
    return out


def corpus() -> list[str]:
    prompts = SD_PROMPTS + EDGE_PROMPTS + long_prompts() + generated_prompts(260)
    seen, out = set(), []
    for p in prompts:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def tokenizer_fixture(tmp: Path) -> dict:
    from transformers import CLIPTokenizer

    base = tmp / "base"
    write_vocab(base)
    configs = {"base": {}, "sd1": config_files(added("<|endoftext|>")), "sd2": config_files("!")}
    toks = {}
    for name, files in configs.items():
        d = tmp / name
        if name != "base":
            shutil.copytree(base, d)
            for fname, text in files.items():
                (d / fname).write_text(text, encoding="utf-8")
        toks[name] = CLIPTokenizer.from_pretrained(str(d))
    assert toks["sd1"].pad_token_id == 49407 and toks["sd2"].pad_token_id == 0
    # REFERENCE.md's examples.
    t = toks["base"]
    assert t("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert t("a photograph of an astronaut riding a horse").input_ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert t("").input_ids == [49406, 49407]

    cases = []
    for i, p in enumerate(corpus()):
        ids = {name: tk(p).input_ids for name, tk in toks.items()}
        for v in ids.values():
            assert v[0] == 49406 and v[-1] == 49407
        case = {"prompt": p, "ids": ids["base"][1:-1]}
        for name in ["sd1", "sd2"]:
            if ids[name] != ids["base"]:
                case[name] = ids[name][1:-1]
        case["decode"] = t.decode(ids["base"])
        case["decode_skip"] = t.decode(ids["base"], skip_special_tokens=True)
        if len(ids["base"]) > 77 or i % 25 == 0:
            for name in ["sd1", "sd2"]:
                case[f"padded_{name}"] = toks[name](p, padding="max_length", max_length=77, truncation=True).input_ids
        if len(ids["base"]) > 77:
            # diffusers' StableDiffusionPipeline._encode_prompt warning text.
            untruncated = toks["sd1"](p, padding="longest", return_tensors="pt").input_ids
            case["removed_text"] = toks["sd1"].batch_decode(untruncated[:, 77 - 1 : -1])[0]
        cases.append(case)
    # textual-inversion style added tokens (transformers' add_tokens: normalized, not special)
    tk = CLIPTokenizer.from_pretrained(str(tmp / "sd1"))
    added_tokens = ["<cat-toy>", "<Big>", "tok with space", "<style>", "<style>_1"]
    for a in added_tokens:
        assert tk.add_tokens(a) == 1
    added_cases = []
    for p in ["a <cat-toy> photo", "a <CAT-TOY>photo<cat-toy><cat-toy>", "<Big> <big>", "tok  with   space tok with space",
              "x<cat-toy", "<style> and <style>_1", "A <Cat-Toy>!"]:
        ids = tk(p).input_ids
        added_cases.append({"prompt": p, "ids": ids[1:-1], "decode": tk.decode(ids), "decode_skip": tk.decode(ids, skip_special_tokens=True)})
    # Folders as transformers 5 saves them: tokenizer.json + tokenizer_config.json only.
    # Stored without the vocabulary and merges (the Rust test puts them back).
    saved = {}
    vocab = json.loads((base / "vocab.json").read_text(encoding="utf-8"))
    for name, src, extra in [("sd1_saved", "sd1", ["<cat-toy>"]), ("sd2_saved", "sd2", [])]:
        tk = CLIPTokenizer.from_pretrained(str(tmp / src))
        for a in extra:
            tk.add_tokens(a)
        out = tmp / name
        tk.save_pretrained(str(out))
        tk = CLIPTokenizer.from_pretrained(str(out))
        tj = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
        assert tj["model"]["vocab"] == vocab and len(tj["model"]["merges"]) == 48894
        assert tj["model"]["merges"][0] == ["i", "n"]
        tj["model"]["vocab"], tj["model"]["merges"] = {}, []
        files = {f.name: f.read_text(encoding="utf-8") for f in sorted(out.iterdir()) if f.name != "tokenizer.json"}
        files["tokenizer.json"] = json.dumps(tj, ensure_ascii=False)
        prompts = [c["prompt"] for c in cases[::4]] + ["a <cat-toy> photo", "A <CAT-TOY>!", "<|STARTOFTEXT|>x<|endoftext|>"]
        saved[name] = {"files": files, "pad_id": tk.pad_token_id,
                       "cases": [{"prompt": p, "ids": tk(p).input_ids[1:-1]} for p in prompts]}
    print(f"clip tokenizer: {len(cases)} prompts, {sum(len(c['ids']) for c in cases)} ids")
    return {"configs": configs, "cases": cases, "added_tokens": added_tokens, "added_cases": added_cases, "saved": saved}


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)}: {path.stat().st_size} bytes")


def text_model_fixture(write, tmp: Path) -> None:
    from diffusers.loaders import TextualInversionLoaderMixin
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32,
               pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(**cfg, attn_implementation="eager")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embedding" in name:
                p.normal_(0.0, 1.0)  # larger than the 0.02 init, so every row matters
            elif p.dim() == 1:  # biases and layer-norm affine: make them non-trivial
                p.add_(torch.randn_like(p) * 0.5)
            else:
                p.normal_(0.0, p.shape[1] ** -0.5)
            p.copy_(p.half().float())  # the stored float16 values, computed in float32
    out_dir = FIXTURES / "tiny-sd" / "text_encoder"
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(out_dir / "config.json"))
    # Keys as in the SD 1.x/2.x checkpoints (`text_model.` prefix, an int64 position_ids
    # buffer); transformers 5 saves them without the prefix and loads both layouts.
    sd = {f"text_model.{k}": v.half().contiguous() for k, v in model.state_dict().items()}
    sd["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    tmpf = out_dir / "model.safetensors.tmp"
    save_file(sd, str(tmpf), metadata={"format": "pt"})
    tmpf.replace(out_dir / "model.safetensors")
    print(f"wrote fixtures/tiny-sd/text_encoder/model.safetensors: {(out_dir / 'model.safetensors').stat().st_size} bytes")

    # The same weights with SD 2.x's activation.
    gelu = CLIPTextModel(CLIPTextConfig(**{**cfg, "hidden_act": "gelu"}, attn_implementation="eager")).eval()
    gelu.load_state_dict(model.state_dict())

    tok1 = CLIPTokenizer.from_pretrained(str(tmp / "sd1"))
    tok2 = CLIPTokenizer.from_pretrained(str(tmp / "sd2"))
    long_prompt = "a highly detailed matte painting of a castle on a hill, volumetric light, dramatic clouds, " * 5
    tensors, cases = {}, []

    def run(name, m, tok, prompts, padded=True, clip_skip=0, desc=""):
        if padded:
            ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        else:
            ids = tok(prompts, return_tensors="pt").input_ids
        with torch.no_grad():
            if clip_skip:
                hs = m(ids, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
                h = m.final_layer_norm(hs)  # transformers 5 has no `.text_model` level
            else:
                h = m(ids).last_hidden_state
        tensors[name] = h.float().contiguous()
        cases.append({"name": name, "prompts": prompts, "padded": padded, "clip_skip": clip_skip,
                      "ids": ids.flatten().tolist(), "batch": len(prompts), "desc": desc})

    run("sd1_empty", model, tok1, [""], desc="unconditional prompt, padded with <|endoftext|>")
    run("sd1_cat", model, tok1, ["a photo of a cat"])
    assert len(tok1(long_prompt).input_ids) > 77
    run("sd1_long", model, tok1, [long_prompt], desc="truncated to 75 content tokens")
    run("sd1_batch2", model, tok1, ["", "a photograph of an astronaut riding a horse"], desc="CFG batch [uncond, cond]")
    run("sd1_unpadded", model, tok1, ["a photo of a cat"], padded=False, desc="7 ids, no padding")
    run("sd1_clip_skip1", model, tok1, ["a photo of a cat"], clip_skip=1)
    run("sd2_batch2", gelu, tok2, ["", "A fantasy landscape, trending on artstation!"], desc="gelu, padded with ! (id 0)")
    run("sd2_long", gelu, tok2, [long_prompt])

    # Textual inversion through diffusers' own loader.
    class Loader(TextualInversionLoaderMixin):
        def __init__(self, tokenizer, text_encoder):
            self.tokenizer, self.text_encoder = tokenizer, text_encoder
            self.components = {"tokenizer": tokenizer, "text_encoder": text_encoder}
            self.hf_device_map = None

    g = torch.Generator().manual_seed(7)
    single = {"<cat-toy>": torch.randn(32, generator=g).half().float()}
    multi = {"<style>": torch.randn(3, 32, generator=g).half().float()}
    for fname, sd_ti in [("clip_learned_embeds.safetensors", single), ("clip_learned_embeds_multi.safetensors", multi)]:
        path = FIXTURES / fname
        save_file({k: v.contiguous() for k, v in sd_ti.items()}, str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").replace(path)
        print(f"wrote fixtures/{fname}: {path.stat().st_size} bytes")
    ti_tok = CLIPTokenizer.from_pretrained(str(tmp / "sd1"))
    ti_model = CLIPTextModel(CLIPTextConfig(**cfg, attn_implementation="eager")).eval()
    ti_model.load_state_dict(model.state_dict())
    loader = Loader(ti_tok, ti_model)
    loader.load_textual_inversion(str(FIXTURES / "clip_learned_embeds.safetensors"))
    loader.load_textual_inversion(str(FIXTURES / "clip_learned_embeds_multi.safetensors"))
    assert len(ti_tok) == 49412
    ti_prompts = ["a <cat-toy> sitting on a table", "a painting of a fox in <style>"]
    converted = loader.maybe_convert_prompt(ti_prompts, ti_tok)
    run("ti_batch2", ti_model, ti_tok, converted, desc="textual inversion, prompts after maybe_convert_prompt")
    cases[-1]["raw_prompts"] = ti_prompts

    meta = {"cases": json.dumps(cases), "config_quick_gelu": json.dumps(cfg), "config_gelu": json.dumps({**cfg, "hidden_act": "gelu"})}
    write("clip_text_model.safetensors", tensors, meta)


def group(write) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        write_json(FIXTURES / "clip_tokenizer.json", tokenizer_fixture(tmp))
        text_model_fixture(write, tmp)
