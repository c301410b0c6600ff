#!/usr/bin/env python3
"""Reference CPU timing of GOT-OCR 2.0 in PyTorch/transformers (random weights, float32).

Builds `GotOcr2ForConditionalGeneration` with the architecture of the published
GOT-OCR-2.0-hf checkpoint (set explicitly below; random weights, nothing is
downloaded) and measures, under torch.inference_mode():

  (a) vision tower + projector on one 1024x1024 tile (1 warm-up, median of --vision-runs)
  (b) prefill of one prompt of 286 tokens holding 256 image tokens: the text decoder
      over the whole prompt with the image features already computed (vision not
      included), logits for the last position only, KV cache on (1 warm-up, median
      of --prefill-runs)
  (c) one decode step (one new token per sequence, KV cache of ~300 positions) at
      batch 1, 2, 4, 8: median over --steps steps after 1 warm-up step. The cache is
      filled with random keys/values (values do not change the cost) and grows by
      one position per step.

Usage:
    python3 benches/got_torch.py [--threads 2] [--steps 8] [--vision-runs 3]
                                 [--prefill-runs 3] [--json OUT.json] [--tiny]

--tiny uses the tiny parity config of tests/fixtures/got-ocr2/config.json
(64 px tile, 16 image tokens) as a smoke test; the full-size run takes minutes
on 2 cores. Package versions: scripts/requirements-fixtures.txt.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import transformers
from transformers import GotOcr2Config, GotOcr2ForConditionalGeneration
from transformers.cache_utils import DynamicCache

ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = ROOT / "tests" / "fixtures" / "got-ocr2" / "config.json"

BATCHES = (1, 2, 4, 8)
CACHE_LEN = 300
PROMPT_TEXT_TOKENS = 30  # 256 image tokens + 30 others = 286 at full size


def full_config() -> GotOcr2Config:
    """GOT-OCR-2.0-hf: SAM-base-like ViTDet encoder + Qwen-0.5B-style decoder (MHA, 16 kv heads)."""
    return GotOcr2Config(
        vision_config=dict(
            hidden_size=768,
            output_channels=256,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_channels=3,
            image_size=1024,
            patch_size=16,
            hidden_act="gelu",
            layer_norm_eps=1e-6,
            qkv_bias=True,
            use_abs_pos=True,
            use_rel_pos=True,
            window_size=14,
            global_attn_indexes=[2, 5, 8, 11],
            mlp_dim=3072,
            # the library default (1e-10) makes the random vision weights ~0; use a sane scale
            initializer_range=0.02,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=151860,
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=24,
            num_attention_heads=16,
            num_key_value_heads=16,
            hidden_act="silu",
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True,
            use_sliding_window=False,
            max_window_layers=21,
        ),
        image_token_index=151859,
        image_seq_length=576,
        tie_word_embeddings=True,
    )


def tiny_config() -> GotOcr2Config:
    if not TINY_CONFIG.exists():
        sys.exit(f"{TINY_CONFIG} missing: run python3 scripts/got_ocr2_fixtures.py first")
    return GotOcr2Config.from_json_file(str(TINY_CONFIG))


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def median_ms(fn, runs: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(ms(t0))
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="decode steps timed per batch size")
    ap.add_argument("--vision-runs", type=int, default=3)
    ap.add_argument("--prefill-runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--tiny", action="store_true", help="tiny fixture config (smoke test)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)

    cfg = tiny_config() if args.tiny else full_config()
    vc, tc = cfg.vision_config, cfg.text_config

    t0 = time.perf_counter()
    with torch.no_grad():
        model = GotOcr2ForConditionalGeneration(cfg).eval()
    init_s = ms(t0) / 1000.0
    n_params = sum(p.numel() for p in model.parameters())
    attn_impl = model.config.text_config._attn_implementation
    with torch.no_grad():
        assert all(bool(torch.isfinite(p.sum())) for p in model.parameters()), "non-finite weights"

    grid = vc.image_size // vc.patch_size
    n_img = (grid // 4) ** 2  # two stride-2 convs in the projector
    vocab = tc.vocab_size
    img_id = cfg.image_token_index
    print(
        f"{'tiny' if args.tiny else 'full'} GOT-OCR2: {n_params / 1e6:.1f}M params, init {init_s:.1f}s, "
        f"threads {torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )

    results: dict = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "threads": torch.get_num_threads(),
        "config": "tiny" if args.tiny else "full",
        "dtype": "float32",
        "params": n_params,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

    with torch.inference_mode():
        # (a) vision tower + projector on one tile
        pixel_values = torch.randn(1, vc.num_channels, vc.image_size, vc.image_size)

        def vision():
            return model.model.get_image_features(pixel_values=pixel_values)

        vision_ms, vision_all = median_ms(vision, args.vision_runs)
        feats = vision()
        assert tuple(feats.pooler_output.shape) == (1, n_img, tc.hidden_size), feats.pooler_output.shape
        print(f"(a) vision+projector, 1 tile {vc.image_size}px -> {n_img} tokens: {vision_ms:.1f} ms (median of {args.vision_runs})")

        # (b) prefill: <30 text tokens around <img> + n_img image tokens + </img>>
        g = torch.Generator().manual_seed(1)
        text_ids = torch.randint(0, min(vocab, 151643) - 16, (PROMPT_TEXT_TOKENS,), generator=g)
        pre, post = text_ids[:20], text_ids[20:]
        ids = torch.cat([pre, torch.full((n_img,), img_id), post])[None]
        prompt_len = ids.shape[1]

        def prefill():
            return model(input_ids=ids, mm_encoder_outputs={"image": feats}, use_cache=True, logits_to_keep=1)

        prefill_ms, prefill_all = median_ms(prefill, args.prefill_runs)
        print(f"(b) prefill {prompt_len} tokens ({n_img} image): {prefill_ms:.1f} ms (median of {args.prefill_runs}), "
              f"{prompt_len / prefill_ms * 1000:.0f} tok/s")

        # (c) decode steps at several batch sizes with a ~CACHE_LEN cache
        head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
        decode = {}
        tps = {}
        for b in BATCHES:
            cache = DynamicCache(config=tc)
            for layer in range(tc.num_hidden_layers):
                k = torch.randn(b, tc.num_key_value_heads, CACHE_LEN, head_dim, generator=g)
                v = torch.randn(b, tc.num_key_value_heads, CACHE_LEN, head_dim, generator=g)
                cache.update(k, v, layer)
            tok = torch.randint(0, min(vocab, 151643), (b, 1), generator=g)
            times = []
            for step in range(args.steps + 1):
                t0 = time.perf_counter()
                out = model(input_ids=tok, cache=cache, use_cache=True)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                dt = ms(t0)
                cache = out.cache
                if step > 0:  # step 0 is the warm-up
                    times.append(dt)
            med = statistics.median(times)
            decode[str(b)] = med
            tps[str(b)] = b / med * 1000.0
            print(f"(c) decode batch {b}: {med:.1f} ms/step, {tps[str(b)]:.1f} tok/s "
                  f"(median of {args.steps}, cache {CACHE_LEN}..{CACHE_LEN + args.steps})")

    results.update(
        {
            "vision_ms": vision_ms,
            "prefill_ms": prefill_ms,
            "decode_ms_per_step": decode,
            "decode_tokens_per_s": tps,
            "vision_runs_ms": vision_all,
            "prefill_runs_ms": prefill_all,
            "prefill_tokens": prompt_len,
            "image_tokens": n_img,
            "image_size": vc.image_size,
            "cache_len": CACHE_LEN,
            "steps": args.steps,
            "init_s": init_s,
            "notes": f"random weights, float32, torch.inference_mode; text attention {attn_impl}; prefill excludes "
            "vision and computes logits for the last position only; decode cache prefilled with random K/V",
        }
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
