#!/usr/bin/env python3
"""Tiny Pix2Struct (DePlot architecture) parity fixtures for the candle port.

What it makes (the fixture folder tests/fixtures/pix2struct/ stays under 1 MB in total):

  tests/fixtures/pix2struct/config.json, generation_config.json, model.safetensors
      A tiny `Pix2StructForConditionalGeneration` (transformers) with the DePlot layout
      (is_vqa=True, untied lm_head, gated-gelu_new MLPs, T5-style RMS norms without bias,
      no attention scaling), every parameter randomized, saved with `save_pretrained`
      (safetensors, float32). The checkpoint keys are the module names as they are
      (`encoder.embeddings.*`, `encoder.encoder.layer.N.*`, `encoder.layernorm`,
      `decoder.embed_tokens`, `decoder.layer.N.{self_attention,encoder_decoder_attention,mlp}.*`,
      `decoder.final_layer_norm`, `decoder.lm_head`); reference.json lists every one with
      its shape. `decoder.lm_head.weight` is saved (tie_word_embeddings=False).
  tests/fixtures/pix2struct/reference.safetensors + reference.json
      Model inputs (flattened_patches for three patch grids, attention_mask), the encoder
      output, greedy decoding of 24 steps (each image alone and the three batched) with the
      logits of every step, and the image-processor references (plain and VQA/header);
      reference.json describes every tensor and records the checks (top-1/top-2 logit gap,
      batched-vs-alone differences, HF generate tokens, processor order and formulas).
  tests/fixtures/pix2struct/processor_input.png
      A deterministic 70x45 RGB image the plain processor reference was made from.
  tests/fixtures/pix2struct/chart_input.png
      A deterministic 120x90 RGB bar chart the header references were made from.
  tests/fixtures/pix2struct/chart_with_header.png
      render_header(chart_input, DePlot prompt): the header stacked above the upscaled chart
      (RGB, lossless; the uint8 pixels of the processor's intermediate image).
  models/deplot-header.png
      The DePlot prompt "Generate underlying data table of the figure below:" rendered once
      with transformers' own `render_text` defaults (text size 36, wrap 80, padding 5, black on
      white) in Liberation Sans Regular. Stored as an 8-bit grayscale PNG: render_text's RGB
      output has R == G == B at every pixel (asserted), so expanding gray to RGB gives the
      rendered image exactly. The Rust program embeds it.

  tests/fixtures/pix2struct/tokenizer.json
      A tiny character-level `tokenizers` tokenizer (not DePlot's SentencePiece) whose 80 ids
      fit the tiny vocab: <pad>=0 </s>=1 <unk>=2 (special), then '|', ' ', '\n', digits,
      letters and a few symbols, one character each, a Fuse decoder. With it the fixture folder
      is a checkpoint folder as `hf download` leaves one, so the figure stage can run it
      (tests/cli.rs); its random tokens decode to random characters.

Font. transformers' render_text downloads Arial from the model hub when no font is given,
and the hub is unreachable here. The fixtures use Liberation Sans Regular (metric-compatible
with Arial, SIL Open Font License) from the Debian package fonts-liberation (1:1.07.4-11 on
bookworm), installed with

    apt-get update && apt-get install -y fonts-liberation

(file /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf; PIX2STRUCT_FONT=<path>
overrides). reference.json records the font file's sha256 and the Pillow/FreeType/raqm
versions, on which the rendered pixels depend. In transformers 5.25 the image processor's
__call__ rejects a `font_path` keyword (its kwargs TypedDict has no such key), so for the VQA
reference the script points the processor modules' hub download at the local font file: the
processing code itself runs unchanged. Nothing goes to the network (HF_HUB_OFFLINE=1).

Rerun (deterministic; needs the packages pinned in scripts/requirements-fixtures.txt plus
fonts-liberation, CPU only, one thread, no network):

    python3 scripts/pix2struct_fixtures.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib
import hashlib
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, features
from safetensors import safe_open
from safetensors.torch import save_file

import PIL
import transformers
from transformers import AutoImageProcessor, Pix2StructConfig, Pix2StructForConditionalGeneration
from transformers.models.pix2struct import image_processing_pil_pix2struct as pil_mod
from transformers.models.pix2struct import image_processing_pix2struct as tv_mod
from transformers.models.pix2struct.image_processing_pil_pix2struct import Pix2StructImageProcessorPil
from transformers.models.pix2struct.image_processing_pix2struct import Pix2StructImageProcessor, render_text

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "pix2struct"
HEADER_PNG = ROOT / "models" / "deplot-header.png"

# ---------------------------------------------------------------- constants
VOCAB = 80
PAD_ID = 0  # also decoder_start_token_id
EOS_ID = 1
HIDDEN = 32
D_KV = 8
HEADS = 4
D_FF = 64
PATCH = 4
PATCH_DIM = PATCH * PATCH * 3  # 48
SEQ_LEN = 64  # rows of row_embedder / column_embedder
N_PATCHES = 64  # rows of the flattened_patches input
GRIDS = [(6, 8), (5, 8), (8, 8)]  # (rows, cols) of images 0, 1, 2: 48, 40, 64 valid patches
NEW_TOKENS = 24
MIN_GAP = 1e-3
BASE_SEED = 20250611

DEPLOT_HEADER = "Generate underlying data table of the figure below:"
PROC_PATCH = {"height": 16, "width": 16}
PROC_MAX_PATCHES = 64

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",  # Debian fonts-liberation
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",  # Debian fonts-liberation2
]


def find_font() -> str:
    env = os.environ.get("PIX2STRUCT_FONT")
    for cand in ([env] if env else []) + FONT_CANDIDATES:
        if cand and os.path.isfile(cand):
            return cand
    raise SystemExit(
        "Liberation Sans Regular not found: apt-get update && apt-get install -y fonts-liberation "
        "(or set PIX2STRUCT_FONT to LiberationSans-Regular.ttf)"
    )


def tiny_config() -> Pix2StructConfig:
    return Pix2StructConfig(
        vision_config=dict(
            hidden_size=HIDDEN,
            patch_embed_hidden_size=PATCH_DIM,
            d_ff=D_FF,
            d_kv=D_KV,
            num_hidden_layers=2,
            num_attention_heads=HEADS,
            dense_act_fn="gelu_new",
            layer_norm_eps=1e-6,
            dropout_rate=0.0,
            attention_dropout=0.0,
            seq_len=SEQ_LEN,
        ),
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            d_kv=D_KV,
            d_ff=D_FF,
            num_layers=2,
            num_heads=HEADS,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
            layer_norm_epsilon=1e-6,
            dense_act_fn="gelu_new",
            decoder_start_token_id=PAD_ID,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            bos_token_id=None,
        ),
        # Pix2StructConfig copies this flag into text_config; False => decoder.lm_head.weight is its own tensor
        tie_word_embeddings=False,
        is_vqa=True,  # as DePlot's config (the model ignores it; the processor's is_vqa matters)
        dtype="float32",
    )


# ---------------------------------------------------------------- weights
def randomize_(model: torch.nn.Module, gen: torch.Generator) -> dict:
    """Give every parameter a random value with a per-tensor scale (O(1) activations)."""
    scales = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            leaf = name.split(".")[-1]
            if "row_embedder" in name or "column_embedder" in name or "relative_attention_bias" in name:
                std, mean = 0.5, 0.0
            elif "embed_tokens" in name:
                std, mean = 0.5, 0.0
            elif "norm" in name and leaf == "weight":  # T5-style RMS norm scales
                std, mean = 0.1, 1.0
            elif leaf == "bias":  # only patch_projection has one
                std, mean = 0.05, 0.0
            elif name.endswith("lm_head.weight"):
                # twice 1/sqrt(fan_in): logits ~ N(0, 4) keep the top-1/top-2 gaps clear of float noise
                std, mean = 2.0 / math.sqrt(shape[1]), 0.0
            elif name.endswith("query.weight"):
                # no 1/sqrt(d_kv) score scaling in Pix2Struct (T5 style): fold it into the query
                std, mean = 1.0 / math.sqrt(shape[1] * D_KV), 0.0
            else:  # Linear weights [out, in]
                std, mean = 1.0 / math.sqrt(shape[1]), 0.0
            p.copy_(torch.randn(shape, generator=gen) * std + mean)
            scales[name] = {"mean": mean, "std": round(std, 6)}
    return scales


# ---------------------------------------------------------------- inputs
def make_patches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, 64, 2 + 48]: row id, column id (from 1, row-major as the processor lays them out), pixels."""
    fp = torch.zeros((len(GRIDS), N_PATCHES, 2 + PATCH_DIM), dtype=torch.float32)
    for b, (rows, cols) in enumerate(GRIDS):
        n = rows * cols
        r = torch.arange(rows).repeat_interleave(cols) + 1
        c = torch.arange(cols).repeat(rows) + 1
        fp[b, :n, 0] = r.float()
        fp[b, :n, 1] = c.float()
        fp[b, :n, 2:] = torch.randn((n, PATCH_DIM), generator=gen)
    mask = (fp.sum(-1) != 0).float()
    for b, (rows, cols) in enumerate(GRIDS):
        assert int(mask[b].sum()) == rows * cols
    return fp, mask


# ---------------------------------------------------------------- decoding
@torch.inference_mode()
def greedy_full(model, fp, mask, steps):
    """Clean reference: every step runs the whole model (no cache) on all tokens so far and takes
    the argmax at the last position. Starts from decoder_start_token_id, never stops at eos."""
    ids = torch.full((fp.shape[0], 1), PAD_ID, dtype=torch.long)
    tokens, step_logits = [], []
    for _ in range(steps):
        out = model(flattened_patches=fp, attention_mask=mask, decoder_input_ids=ids, use_cache=False)
        logits = out.logits[:, -1, :].float()
        nxt = logits.argmax(-1)
        tokens.append(nxt)
        step_logits.append(logits)
        ids = torch.cat([ids, nxt[:, None]], 1)
    return torch.stack(tokens, 1), torch.stack(step_logits, 1)


def max_run(tokens: list) -> int:
    """Length of the longest run of one repeated token."""
    best = cur = 1
    for a, b in zip(tokens, tokens[1:]):
        cur = cur + 1 if a == b else 1
        best = max(best, cur)
    return best


def min_top2_gap(step_logits: torch.Tensor) -> float:
    top2 = step_logits.topk(2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min())


def build(seed: int):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Pix2StructForConditionalGeneration(tiny_config())
    scales = randomize_(model, gen)
    model.eval()
    model.set_attn_implementation("eager")
    fp, mask = make_patches(gen)
    return model, scales, fp, mask


# ---------------------------------------------------------------- images
def processor_image() -> Image.Image:
    w, h = 70, 45
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = (xx * 255 // (w - 1)).astype(np.uint8)
    arr[..., 1] = (yy * 255 // (h - 1)).astype(np.uint8)
    arr[..., 2] = ((xx * 2 + yy * 5) % 256).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([6, 5, 22, 17], fill=(250, 250, 250))
    d.ellipse([34, 12, 60, 38], fill=(10, 20, 200))
    d.line([0, 44, 69, 0], fill=(0, 0, 0), width=2)
    d.rectangle([10, 27, 18, 40], outline=(255, 0, 0))
    return img


def chart_image() -> Image.Image:
    """120x90 bar chart: white background, axes, four flat-coloured bars, tick marks."""
    img = Image.new("RGB", (120, 90), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.line([14, 8, 14, 78], fill=(0, 0, 0), width=1)  # y axis
    d.line([14, 78, 114, 78], fill=(0, 0, 0), width=1)  # x axis
    for y in range(18, 78, 15):
        d.line([11, y, 14, y], fill=(0, 0, 0))
        d.line([15, y, 114, y], fill=(225, 225, 225))
    bars = [(22, 40, (31, 119, 180)), (44, 22, (255, 127, 14)), (66, 55, (44, 160, 44)), (88, 31, (214, 39, 40))]
    for x, top, colour in bars:
        d.rectangle([x, top, x + 15, 77], fill=colour)
    d.rectangle([70, 10, 108, 18], outline=(90, 90, 90))
    return img


@contextlib.contextmanager
def local_default_font(font_path: str):
    """render_text without a font asks hf_api().hf_hub_download(...) for Arial; answer with a local file.

    In transformers 5.25 the processors' __call__ rejects font_path/font_bytes (not in the kwargs
    TypedDict), so this is the only way to run the unmodified VQA path offline."""

    class _LocalFont:
        def hf_hub_download(self, *args, **kwargs):
            return font_path

    saved = (tv_mod.hf_api, pil_mod.hf_api)
    tv_mod.hf_api = pil_mod.hf_api = lambda: _LocalFont()
    try:
        yield
    finally:
        tv_mod.hf_api, pil_mod.hf_api = saved


def header_geometry(img_w: int, img_h: int, hdr_w: int, hdr_h: int) -> dict:
    """The arithmetic of render_header, written out exactly as the code does it (Python floats)."""
    new_width = max(hdr_w, img_w)
    new_height = int(img_h * (new_width / img_w))
    new_header_height = int(hdr_h * (new_width / hdr_w))
    return {
        "image_wh": [img_w, img_h],
        "header_wh": [hdr_w, hdr_h],
        "new_width": new_width,
        "new_image_height": new_height,
        "new_header_height": new_header_height,
        "canvas_wh": [new_width, new_height + new_header_height],
    }


def patch_grid(height: int, width: int, max_patches: int, ph: int = 16, pw: int = 16) -> tuple[int, int]:
    scale = (max_patches * (ph / height) * (pw / width)) ** 0.5
    rows = max(min(int(scale * height / ph), max_patches), 1)
    cols = max(min(int(scale * width / pw), max_patches), 1)
    return rows, cols


def manual_flattened_patches(u8_chw: torch.Tensor, max_patches: int, unbiased: bool, f64_stats: bool = False):
    """Re-implementation of the processor: float -> per-image normalize -> bilinear antialias resize -> patches."""
    x = u8_chw.float()[None]  # [1, 3, H, W], values 0..255 (no rescale by 1/255)
    n = x.numel()
    if f64_stats:
        xd = x.double()
        mean = xd.mean()
        std = xd.std(correction=1 if unbiased else 0)
        std = torch.clamp(std, min=1.0 / math.sqrt(n))
        x = ((xd - mean) / std).float()
    else:
        mean = x.mean()
        std = x.std(correction=1 if unbiased else 0)
        std = torch.maximum(std, torch.tensor(1.0 / n**0.5))
        x = (x - mean) / std
    _, _, h, w = x.shape
    rows, cols = patch_grid(h, w, max_patches)
    x = torch.nn.functional.interpolate(
        x, size=(rows * 16, cols * 16), mode="bilinear", align_corners=False, antialias=True
    )
    # [1, 3, R*16, C*16] -> [R*C, 16*16*3], inside a patch: (py, px, channel), channel fastest
    p = x[0].reshape(3, rows, 16, cols, 16).permute(1, 3, 2, 4, 0).reshape(rows * cols, 16 * 16 * 3)
    r = torch.arange(rows).repeat_interleave(cols).float()[:, None] + 1
    c = torch.arange(cols).repeat(rows).float()[:, None] + 1
    out = torch.zeros((max_patches, 2 + 768))
    out[: rows * cols] = torch.cat([r, c, p], 1)
    return out[None], {"rows": rows, "cols": cols, "mean": float(mean), "std": float(std)}


def tiny_tokenizer():
    """The 80-id character tokenizer described in the module docstring."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, Regex

    chars = ["|", " ", "\n"] + [str(d) for d in range(10)]
    chars += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    chars += list(".,-:%()/'+=_")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for c in chars:
        vocab[c] = len(vocab)
    assert len(vocab) == 80, len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    assert tok.decode(tok.encode("a | 1").ids) == "a | 1"
    return tok


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- main
def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    font = find_font()

    for attempt in range(100):
        seed = BASE_SEED + attempt
        model, scales, fp, mask = build(seed)
        alone = [greedy_full(model, fp[i : i + 1], mask[i : i + 1], NEW_TOKENS) for i in range(3)]
        greedy_tokens = torch.cat([t for t, _ in alone])
        step_logits = torch.cat([l for _, l in alone])
        gap = min_top2_gap(step_logits)
        rows_distinct = [len(set(r.tolist())) for r in greedy_tokens]
        rows_run = [max_run(r.tolist()) for r in greedy_tokens]
        ok = (
            gap > MIN_GAP
            and min(rows_distinct) >= 8  # not one repeated token ...
            and max(rows_run) <= 5  # ... nor a long copy-the-last-token tail
            and len({tuple(r.tolist()) for r in greedy_tokens}) == 3
            and not (greedy_tokens == EOS_ID).any()
        )
        print(f"seed {seed}: min top1-top2 gap {gap:.4g}, distinct/row {rows_distinct}, longest run/row {rows_run}, ok={ok}")
        if ok:
            break
    else:
        raise SystemExit("no seed gave well separated logits")

    batched_tokens, batched_logits = greedy_full(model, fp, mask, NEW_TOKENS)
    assert torch.equal(batched_tokens, greedy_tokens), (batched_tokens, greedy_tokens)
    batch_logit_diff = float((batched_logits - step_logits).abs().max())
    assert batch_logit_diff < 1e-5, batch_logit_diff
    eos_in_alone = bool((greedy_tokens == EOS_ID).any())

    with torch.inference_mode():
        enc = model.encoder(flattened_patches=fp, attention_mask=mask).last_hidden_state
        enc_alone_padded_diff = 0.0
        enc_alone_trimmed_diff = 0.0
        for b, (rows, cols) in enumerate(GRIDS):
            n = rows * cols
            e1 = model.encoder(flattened_patches=fp[b : b + 1], attention_mask=mask[b : b + 1]).last_hidden_state
            e2 = model.encoder(flattened_patches=fp[b : b + 1, :n], attention_mask=mask[b : b + 1, :n])
            enc_alone_padded_diff = max(enc_alone_padded_diff, float((e1[0, :n] - enc[b, :n]).abs().max()))
            enc_alone_trimmed_diff = max(
                enc_alone_trimmed_diff, float((e2.last_hidden_state[0] - enc[b, :n]).abs().max())
            )
        assert enc_alone_padded_diff < 1e-5 and enc_alone_trimmed_diff < 1e-5
        # the same steps with the default (sdpa) attention, for information
        model.set_attn_implementation("sdpa")
        ids = torch.cat([torch.zeros((3, 1), dtype=torch.long), greedy_tokens[:, :-1]], 1)
        sdpa_logits = model(flattened_patches=fp, attention_mask=mask, decoder_input_ids=ids, use_cache=False).logits
        sdpa_diff = float((sdpa_logits - step_logits).abs().max())
        model.set_attn_implementation("eager")
        # cached single-token decoding (what generate does) on the same tokens
        out = model(flattened_patches=fp, attention_mask=mask, decoder_input_ids=ids[:, :1], use_cache=True)
        cache, enc_out = out.cache, (out.encoder_last_hidden_state,)
        cached = [out.logits[:, -1]]
        for t in range(1, NEW_TOKENS):
            out = model(
                encoder_outputs=enc_out, attention_mask=mask, decoder_input_ids=ids[:, t : t + 1], cache=cache, use_cache=True
            )
            cache = out.cache
            cached.append(out.logits[:, -1])
        cached_diff = float((torch.stack(cached, 1) - step_logits).abs().max())

    def hf_generate(f, m):
        with torch.inference_mode():
            g = model.generate(flattened_patches=f, attention_mask=m, max_new_tokens=NEW_TOKENS, do_sample=False)
        return g.tolist()

    gen_alone = [hf_generate(fp[i : i + 1], mask[i : i + 1])[0] for i in range(3)]
    gen_batched = hf_generate(fp, mask)
    gen_alone_matches = [g[1:] == greedy_tokens[i].tolist() for i, g in enumerate(gen_alone)]

    # ------------------------------------------------------------ processor (plain)
    with tempfile.TemporaryDirectory() as tmp:
        # DePlot-style preprocessor_config.json in a local dir: what AutoImageProcessor gives a user
        with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
            json.dump(
                {
                    "image_processor_type": "Pix2StructImageProcessor",
                    "processor_class": "Pix2StructProcessor",
                    "do_convert_rgb": True,
                    "do_normalize": True,
                    "is_vqa": False,
                    "max_patches": PROC_MAX_PATCHES,
                    "patch_size": PROC_PATCH,
                },
                f,
            )
        proc = AutoImageProcessor.from_pretrained(tmp)
    assert type(proc) is Pix2StructImageProcessor, type(proc)
    proc_pil = Pix2StructImageProcessorPil(patch_size=PROC_PATCH, max_patches=PROC_MAX_PATCHES, is_vqa=False)
    img = processor_image()
    kw = dict(patch_size=PROC_PATCH, max_patches=PROC_MAX_PATCHES, is_vqa=False, return_tensors="pt")
    out_tv = proc(img, **kw)
    out_pil = proc_pil(img, **kw)
    fpp = out_tv["flattened_patches"].float()
    fpp_pil = out_pil["flattened_patches"].float()
    amp = out_tv["attention_mask"].float()
    assert torch.equal(amp, out_pil["attention_mask"].float())
    tv_vs_pil = float((fpp - fpp_pil).abs().max())

    u8 = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    recon_tv, facts_tv = manual_flattened_patches(u8, PROC_MAX_PATCHES, unbiased=True)
    recon_pil, facts_pil = manual_flattened_patches(u8, PROC_MAX_PATCHES, unbiased=False)
    recon_tv64, facts_tv64 = manual_flattened_patches(u8, PROC_MAX_PATCHES, unbiased=True, f64_stats=True)
    recon_err_tv = float((recon_tv - fpp).abs().max())
    recon_err_pil = float((recon_pil - fpp_pil).abs().max())
    recon_err_f64 = float((recon_tv64 - fpp).abs().max())
    # the PIL class differs by its biased std only: its pixels are the default's times std_unbiased / std_biased
    pil_from_default = fpp.clone()
    pil_from_default[..., 2:] *= facts_tv["std"] / facts_pil["std"]
    pil_relation_err = float((pil_from_default - fpp_pil).abs().max())
    assert pil_relation_err < 1e-5, pil_relation_err
    assert recon_err_tv < 1e-5 and recon_err_pil < 1e-4, (recon_err_tv, recon_err_pil)
    rows, cols = facts_tv["rows"], facts_tv["cols"]
    assert int(amp.sum()) == rows * cols

    # ------------------------------------------------------------ header
    header_img = render_text(DEPLOT_HEADER, font_path=font)
    harr = np.array(header_img)
    assert header_img.mode == "RGB" and (harr[..., 0] == harr[..., 1]).all() and (harr[..., 1] == harr[..., 2]).all()
    chart = chart_image()
    chart_u8 = torch.from_numpy(np.array(chart)).permute(2, 0, 1).contiguous()
    stacked_tv = proc.render_header(chart_u8, DEPLOT_HEADER, font_path=font)  # uint8 [3, H, W]
    stacked_pil = proc_pil.render_header(chart_u8.numpy(), DEPLOT_HEADER, font_path=font)
    assert stacked_tv.dtype == torch.uint8 and np.array_equal(stacked_tv.numpy(), stacked_pil)
    geo = header_geometry(chart.width, chart.height, header_img.width, header_img.height)
    assert list(stacked_tv.shape) == [3, geo["canvas_wh"][1], geo["canvas_wh"][0]], (stacked_tv.shape, geo)
    # the same picture by hand: PIL Image.resize default filter (BICUBIC for RGB), white canvas, two pastes
    canvas = Image.new("RGB", tuple(geo["canvas_wh"]), "white")
    canvas.paste(header_img.resize((geo["new_width"], geo["new_header_height"])), (0, 0))
    canvas.paste(
        chart.resize((geo["new_width"], geo["new_image_height"]), Image.Resampling.BICUBIC),
        (0, geo["new_header_height"]),
    )
    assert np.array_equal(np.array(canvas), stacked_tv.permute(1, 2, 0).numpy())
    stacked_hwc = stacked_tv.permute(1, 2, 0).contiguous()

    with local_default_font(font):
        out_vqa = proc(chart, patch_size=PROC_PATCH, max_patches=PROC_MAX_PATCHES, is_vqa=True,
                       header_text=DEPLOT_HEADER, return_tensors="pt")
        out_vqa_pil = proc_pil(chart, patch_size=PROC_PATCH, max_patches=PROC_MAX_PATCHES, is_vqa=True,
                               header_text=DEPLOT_HEADER, return_tensors="pt")
    fpv = out_vqa["flattened_patches"].float()
    amv = out_vqa["attention_mask"].float()
    vqa_tv_vs_pil = float((fpv - out_vqa_pil["flattened_patches"].float()).abs().max())
    # VQA == header rendered first, then the plain pipeline on the stacked image
    recon_vqa, facts_vqa = manual_flattened_patches(stacked_tv, PROC_MAX_PATCHES, unbiased=True)
    recon_err_vqa = float((recon_vqa - fpv).abs().max())
    assert recon_err_vqa < 1e-5, recon_err_vqa
    plain_on_stacked = proc(Image.fromarray(stacked_hwc.numpy()), **kw)["flattened_patches"].float()
    # (not bit-equal: render_header returns tvF.pil_to_tensor's channels-last view, a non-contiguous
    # [3, H, W] tensor, so the float32 mean/std reductions run in another order: ~1e-6)
    plain_vs_vqa = float((plain_on_stacked - fpv).abs().max())
    assert plain_vs_vqa < 1e-5, plain_vs_vqa

    # ------------------------------------------------------------ write
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(tmp, name), OUT / name)
    img.save(OUT / "processor_input.png", optimize=True)
    chart.save(OUT / "chart_input.png", optimize=True)
    Image.fromarray(stacked_hwc.numpy(), "RGB").save(OUT / "chart_with_header.png", optimize=True)
    HEADER_PNG.parent.mkdir(parents=True, exist_ok=True)
    header_img.convert("L").save(HEADER_PNG, optimize=True)
    # round trips
    assert np.array_equal(np.array(Image.open(OUT / "processor_input.png").convert("RGB")), np.array(img))
    assert np.array_equal(np.array(Image.open(OUT / "chart_input.png").convert("RGB")), np.array(chart))
    assert np.array_equal(np.array(Image.open(OUT / "chart_with_header.png").convert("RGB")), stacked_hwc.numpy())
    assert np.array_equal(np.array(Image.open(HEADER_PNG).convert("RGB")), harr)

    saved = {}
    with safe_open(str(OUT / "model.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            saved[k] = list(f.get_slice(k).get_shape())
    params = dict(model.named_parameters())
    assert set(saved) == set(params), set(saved) ^ set(params)
    assert "decoder.lm_head.weight" in saved

    tensors = {
        "flattened_patches": fp.contiguous(),
        "attention_mask": mask.contiguous(),
        "encoder_hidden_states": enc.contiguous(),
        "greedy_tokens": greedy_tokens.to(torch.int64).contiguous(),
        "step_logits": step_logits.contiguous(),
        "batched_tokens": batched_tokens.to(torch.int64).contiguous(),
        "batched_step_logits": batched_logits.contiguous(),
        "processor_flattened_patches": fpp.contiguous(),
        "processor_attention_mask": amp.contiguous(),
        "processor_flattened_patches_vqa": fpv.contiguous(),
        "processor_attention_mask_vqa": amv.contiguous(),
    }
    save_file(tensors, OUT / "reference.safetensors")
    tiny_tokenizer().save(str(OUT / "tokenizer.json"))

    valid = [r * c for r, c in GRIDS]
    describe = {
        "flattened_patches": f"float32 [3,{N_PATCHES},{2 + PATCH_DIM}]: model input. Per row: row id, column id "
        f"(1-based, row-major over the grid, as the processor lays them out), then {PATCH_DIM} pixel values "
        f"(standard normal). Grids (rows x cols): {GRIDS} = {valid} valid rows; the remaining rows are all zero.",
        "attention_mask": f"float32 [3,{N_PATCHES}]: (flattened_patches.sum(-1) != 0), 1.0 / 0.0.",
        "encoder_hidden_states": f"float32 [3,{N_PATCHES},{HIDDEN}]: model.encoder(flattened_patches, attention_mask)"
        ".last_hidden_state for the batch (after encoder.layernorm). Padding rows are computed too (they attend to "
        "the valid keys only) but are masked out as keys everywhere; compare valid rows only.",
        "greedy_tokens": f"int64 [3,{NEW_TOKENS}]: each image ALONE (batch 1, its 64-row padded input): manual greedy "
        f"loop, decoder_input_ids starts as [[0]] (decoder_start_token_id), each step runs the full model (encoder + "
        f"decoder, no cache) on all tokens so far and appends argmax(logits[:, -1]). No eos stop: all {NEW_TOKENS} "
        f"steps are compared; the last step's decoder input has {NEW_TOKENS} tokens (relative distances up to "
        f"{NEW_TOKENS - 1}, beyond max_exact=4 and max_distance=16 of the 8 unidirectional buckets).",
        "step_logits": f"float32 [3,{NEW_TOKENS},{VOCAB}]: logits at the last decoder position of every step (the "
        "row the greedy token was the argmax of).",
        "batched_tokens": f"int64 [3,{NEW_TOKENS}]: the same loop with the three images in one batch (every decoder "
        "row starts with 0, so no decoder padding); asserted equal to greedy_tokens.",
        "batched_step_logits": f"float32 [3,{NEW_TOKENS},{VOCAB}]: logits of the batched loop.",
        "processor_flattened_patches": f"float32 [1,{PROC_MAX_PATCHES},770]: default image processor "
        f"(Pix2StructImageProcessor, torchvision backend) on processor_input.png, patch 16x16, max_patches "
        f"{PROC_MAX_PATCHES}, is_vqa=False: {rows}x{cols} grid, {rows * cols} valid rows, then zero rows.",
        "processor_attention_mask": f"float32 [1,{PROC_MAX_PATCHES}]: its attention_mask.",
        "processor_flattened_patches_vqa": f"float32 [1,{PROC_MAX_PATCHES},770]: default processor with is_vqa=True, "
        f"header_text=DePlot prompt, Liberation Sans, max_patches {PROC_MAX_PATCHES}, on chart_input.png "
        f"(== plain processor on chart_with_header.png): {facts_vqa['rows']}x{facts_vqa['cols']} grid.",
        "processor_attention_mask_vqa": f"float32 [1,{PROC_MAX_PATCHES}]: its attention_mask.",
    }

    sizes_for_geometry = [(120, 90), (1200, 300), (818, 600), (1000, 1000), (640, 480), (333, 777)]
    reference = {
        "generator": "scripts/pix2struct_fixtures.py",
        "torch_version": torch.__version__.split("+")[0],
        "transformers_version": transformers.__version__,
        "pillow_version": PIL.__version__,
        "seed": seed,
        "attention_implementation": "eager for every reference tensor (sdpa, the default, gives "
        "sdpa_vs_eager_max_abs_logit_diff)",
        "tensors": {
            k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "what": describe[k]}
            for k, v in tensors.items()
        },
        "model": {
            "class": type(model).__name__,
            "checkpoint_tensors": saved,
            "checkpoint_dtype": "float32",
            "checkpoint_key_layout": "module names as they are (save_pretrained applies no renaming for "
            "pix2struct); decoder.lm_head.weight is saved because tie_word_embeddings=False (a top-level "
            "Pix2StructConfig field that __post_init__ copies into text_config)",
            "relative_attention_bias": "only decoder.layer.0.self_attention has one ([num_buckets=8, heads=4]); its "
            "bias is shared by every decoder layer's self-attention. Cross-attention has none (zeros). The encoder "
            "has no relative bias: positions come from row_embedder[row id] + column_embedder[column id].",
            "attention_scaling": "none (scores = q . k, no 1/sqrt(d_kv)), encoder and decoder",
            "norms": "T5-style RMS norm: x * rsqrt(mean(x^2) + eps) * weight, no bias, no mean subtraction",
            "mlp": "gated: wo(gelu_new(wi_0 x) * wi_1 x) (gelu_new = tanh approximation)",
            "layer_norm_eps_vision": model.config.vision_config.layer_norm_eps,
            "layer_norm_epsilon_text": model.config.text_config.layer_norm_epsilon,
            "dense_act_fn": model.config.text_config.dense_act_fn,
            "relative_attention_num_buckets": model.config.text_config.relative_attention_num_buckets,
            "relative_attention_max_distance": model.config.text_config.relative_attention_max_distance,
            "relative_position_bucket": "unidirectional T5: n = max(query_pos - key_pos, 0); max_exact = "
            "num_buckets // 2 = 4; bucket = n if n < 4 else min(4 + int(log(n / 4) / log(16 / 4) * 4), 7) "
            "(float32 log, truncation toward zero)",
            "vision_relative_attention_fields": "vision_config.relative_attention_* are unused by the encoder",
            "randomization": "every parameter: Linear weights ~ N(0, 1/fan_in) except query ~ N(0, 1/(fan_in*d_kv)) "
            "and lm_head ~ N(0, 4/fan_in); patch_projection.bias ~ N(0, 0.05^2); RMS norm weights ~ 1 + N(0, 0.1^2); "
            "row/column embedders, embed_tokens and relative_attention_bias ~ N(0, 0.5^2)",
            "ids": {"vocab_size": VOCAB, "pad": PAD_ID, "decoder_start": PAD_ID, "eos": EOS_ID},
        },
        "encoder": {
            "grids_rows_cols": [list(g) for g in GRIDS],
            "valid_rows": valid,
            "alone_padded_vs_batch_max_abs_diff_valid_rows": enc_alone_padded_diff,
            "alone_trimmed_vs_batch_max_abs_diff_valid_rows": enc_alone_trimmed_diff,
            "alone_trimmed": "image b alone with only its valid rows (no padding rows at all)",
        },
        "decoding": {
            "new_tokens": NEW_TOKENS,
            "method": "manual greedy loop, full forward (no cache) over all decoder tokens each step; eos never stops it",
            "seed_choice": f"first seed from {BASE_SEED} with min top-1/top-2 gap > {MIN_GAP}, >= 8 distinct tokens "
            "and no run of one token longer than 5 in every row, three different rows, and eos never the argmax",
            "min_top1_top2_gap_alone": min_top2_gap(step_logits),
            "min_top1_top2_gap_batched": min_top2_gap(batched_logits),
            "eos_is_argmax_anywhere": eos_in_alone,
            "batched_tokens_equal_alone": bool(torch.equal(batched_tokens, greedy_tokens)),
            "batched_vs_alone_max_abs_logit_diff": batch_logit_diff,
            "sdpa_vs_eager_max_abs_logit_diff": sdpa_diff,
            "kv_cached_vs_full_max_abs_logit_diff": cached_diff,
            "greedy_tokens": greedy_tokens.tolist(),
            "hf_generate": {
                "call": f"model.generate(flattened_patches, attention_mask, max_new_tokens={NEW_TOKENS}, "
                "do_sample=False) (default sdpa attention; generation_config.use_cache is false, copied from "
                "text_config.use_cache, so no KV cache); output starts with decoder_start 0 and stops at eos (then "
                "pads with 0 in a batch)",
                "alone": gen_alone,
                "batched": gen_batched,
                "alone_equal_greedy_tokens": gen_alone_matches,
            },
        },
        "processor": {
            "auto_image_processor_class": type(proc).__name__,
            "auto_backend": "torchvision (Pix2StructImageProcessor; AutoImageProcessor picks it when torchvision is "
            "installed, Pix2StructImageProcessorPil otherwise)",
            "input_png": "processor_input.png (70 wide x 45 high, RGB)",
            "kwargs": {"patch_size": PROC_PATCH, "max_patches": PROC_MAX_PATCHES, "is_vqa": False},
            "order": [
                "convert to RGB; uint8 [3, H, W] -> float32, values 0..255 (NO 1/255 rescale)",
                "normalize per image over all 3*H*W values BEFORE resizing: (x - mean) / max(std, 1/sqrt(3*H*W))",
                "grid: scale = sqrt(max_patches * (16 / H) * (16 / W)); rows = max(min(int(scale * H / 16), "
                "max_patches), 1); cols = max(min(int(scale * W / 16), max_patches), 1) (int() truncates)",
                "resize the normalized float image to (rows*16, cols*16): torch interpolate mode='bilinear', "
                "align_corners=False, antialias=True (torchvision tvF.resize on a float tensor; the PIL class calls "
                "torch.nn.functional.interpolate directly with the same arguments); no uint8 rounding anywhere",
                "patches row-major over the grid; inside a patch the 768 values are ordered (py, px, channel) with "
                "channel fastest, i.e. value[(py*16 + px)*3 + c] = img[c, row*16 + py, col*16 + px]",
                "prepend row id and column id (1-based, float), pad with zero rows to max_patches",
                "attention_mask = (flattened_patches.sum(-1) != 0) as float",
            ],
            "std_default_class": "UNBIASED (torch.std, correction=1, divisor N-1), float32 reduction",
            "std_pil_class": "BIASED (np.std, divisor N), float32",
            "resized_height": rows * 16,
            "resized_width": cols * 16,
            "rows": rows,
            "cols": cols,
            "mean": facts_tv["mean"],
            "std_unbiased_used": facts_tv["std"],
            "std_biased_pil_class": facts_pil["std"],
            "mean_std_f64": [facts_tv64["mean"], facts_tv64["std"]],
            "num_values": int(u8.numel()),
            "reimplementation_max_abs_err_default_class": recon_err_tv,
            "reimplementation_max_abs_err_pil_class": recon_err_pil,
            "reimplementation_with_f64_mean_std_max_abs_err": recon_err_f64,
            "max_abs_diff_default_vs_pil_class": tv_vs_pil,
            "pil_class_output": "Pix2StructImageProcessorPil's flattened_patches are not stored (the folder stays "
            "under 1 MB): they equal processor_flattened_patches with the 768 pixel values of each row multiplied "
            "by std_unbiased_used / std_biased_pil_class (ids and zero rows unchanged)",
            "pil_class_from_default_by_std_ratio_max_abs_err": pil_relation_err,
        },
        "header": {
            "text": DEPLOT_HEADER,
            "font": {
                "file": os.path.basename(font),
                "source": "Debian package fonts-liberation (Liberation Sans: Arial-metric-compatible, SIL OFL 1.1); "
                "transformers' own default would be Arial from the hub",
                "sha256": sha256(font),
            },
            "freetype_version": features.version("freetype2"),
            "raqm_version": features.version("raqm"),
            "layout_engine": "RAQM" if features.check("raqm") else "BASIC",
            "render_text": "transformers render_text defaults: text_size=36, textwrap width 80, padding 5 on every "
            "side, black text on a white RGB canvas; canvas = (right + 10) x (bottom + 10) of "
            "ImageDraw.textbbox((0, 0), text, font) with the text drawn at (5, 5)",
            "header_png": "models/deplot-header.png (8-bit grayscale; R == G == B in the RGB render)",
            "header_width": header_img.width,
            "header_height": header_img.height,
            "header_png_sha256": sha256(str(HEADER_PNG)),
            "chart_input_png": "chart_input.png (120 wide x 90 high, RGB)",
            "chart_with_header_png": "chart_with_header.png: render_header(chart, text) uint8 RGB pixels; the "
            "default and the PIL classes give identical pixels",
            "stacked_height": int(stacked_tv.shape[1]),
            "stacked_width": int(stacked_tv.shape[2]),
            "geometry": geo,
            "geometry_formula": [
                "new_width = max(header.width, image.width)",
                "new_height = int(image.height * (new_width / image.width))  # float64, product after the division, "
                "truncated",
                "new_header_height = int(header.height * (new_width / header.width))",
                "canvas = Image.new('RGB', (new_width, new_height + new_header_height), 'white')",
                "canvas.paste(header.resize((new_width, new_header_height)), (0, 0))",
                "canvas.paste(image.resize((new_width, new_height)), (0, new_header_height))",
                "Image.resize without a filter = BICUBIC (Pillow's default for RGB); same size => plain copy",
                "the default (torchvision) class converts its uint8 CHW tensor to PIL and back; a float tensor would be "
                "multiplied by 255, clamped and truncated to uint8 first",
            ],
            "geometry_examples_with_this_header": [
                header_geometry(w, h, header_img.width, header_img.height) for w, h in sizes_for_geometry
            ],
            "vqa": {
                "call": "processor(chart, is_vqa=True, header_text=text, patch_size 16x16, max_patches "
                f"{PROC_MAX_PATCHES})",
                "font_note": "5.25's __call__ rejects font_path/font_bytes (kwargs TypedDict validation); the script "
                "makes the modules' hf_api().hf_hub_download return the local Liberation file instead",
                "order": "render_header on the uint8 image first, then the plain pipeline (float, normalize, "
                "resize, patches) on the stacked image",
                "rows": facts_vqa["rows"],
                "cols": facts_vqa["cols"],
                "resized_height": facts_vqa["rows"] * 16,
                "resized_width": facts_vqa["cols"] * 16,
                "mean": facts_vqa["mean"],
                "std_unbiased_used": facts_vqa["std"],
                "reimplementation_max_abs_err": recon_err_vqa,
                "max_abs_diff_default_vs_pil_class": vqa_tv_vs_pil,
                "plain_processor_on_chart_with_header_png_max_abs_diff": plain_vs_vqa,
            },
        },
    }
    with open(OUT / "reference.json", "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")

    for p in list(OUT.iterdir()) + [HEADER_PNG]:
        p.chmod(0o644)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    for p in sorted(OUT.iterdir()) + [HEADER_PNG]:
        print(f"  {p.relative_to(ROOT)}: {p.stat().st_size} bytes")
    print(f"wrote {OUT.relative_to(ROOT)} ({total} bytes); seed {seed}")
    print(f"min top1-top2 gap {min_top2_gap(step_logits):.4g} (batched {min_top2_gap(batched_logits):.4g}); "
          f"eos argmax anywhere: {eos_in_alone}")
    print(f"batched vs alone max |dlogit| {batch_logit_diff:.3g}; sdpa vs eager {sdpa_diff:.3g}; "
          f"kv-cached vs full {cached_diff:.3g}")
    print(f"encoder alone vs batch (valid rows): padded {enc_alone_padded_diff:.3g}, trimmed {enc_alone_trimmed_diff:.3g}")
    print(f"HF generate alone equals greedy: {gen_alone_matches}")
    print(f"processor: {type(proc).__name__} grid {rows}x{cols}, default vs PIL class {tv_vs_pil:.3g}; "
          f"VQA grid {facts_vqa['rows']}x{facts_vqa['cols']}, default vs PIL class {vqa_tv_vs_pil:.3g}")
    print(f"header {header_img.width}x{header_img.height}; stacked {stacked_tv.shape[2]}x{stacked_tv.shape[1]}")
    print("greedy tokens:", greedy_tokens.tolist())
    assert total < 1_000_000
    return 0


if __name__ == "__main__":
    sys.exit(main())
