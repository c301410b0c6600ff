#!/usr/bin/env python3
"""Reference CPU timing of DePlot (Pix2Struct) in PyTorch/transformers (random weights, float32).

Builds `Pix2StructForConditionalGeneration` with the architecture of the published
google/deplot checkpoint (set explicitly below; random weights, nothing is
downloaded) and measures, under torch.inference_mode():

  (a) the vision encoder (`model.encoder`) on one image of --max-patches patches, all
      valid (random patch values, row/column ids from 1 on a rows x cols grid, 32x64
      for 2048; mask all ones): 1 warm-up, median of --encoder-runs
  (b) starting one sequence: the first decoder forward (decoder_input_ids [[0]], the
      encoder states, use_cache=True), which computes the cross-attention keys/values
      of every decoder layer once plus the first token's logits: 1 warm-up, median of 3
  (c) one decode step (one new token per sequence) at each of --batch-sizes, with a
      self-attention cache of --context previous tokens and each sequence's
      cross-attention cache over the --max-patches encoder positions: median over
      --steps steps after 1 warm-up step. The cache is real: the start forward plus one
      teacher-forced forward of context-1 random tokens (the same cache as context-1
      single-token steps), repeated per sequence with batch_repeat_interleave (values
      do not change the cost); it grows by one position per step.

Attention runs with the implementation transformers picks by default (sdpa in
transformers 5.25, which is also the faster one on CPU here: the eager path
materializes the 2048x2048 scores of every encoder head); --attn eager forces the eager
one. The JSON records which one ran (attn_implementation).

Usage:
    python3 benches/deplot_torch.py [--threads 2] [--max-patches 2048] [--encoder-runs 2]
                                    [--steps 8] [--context 64] [--batch-sizes 1,2,4,8]
                                    [--attn default|sdpa|eager] [--json OUT.json] [--tiny]

--tiny uses the tiny parity config of tests/fixtures/pix2struct/config.json
(64 patches) as a smoke test that finishes in seconds; the full-size run takes about a
minute or more on 2 cores. Package versions: scripts/requirements-fixtures.txt.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import transformers
from transformers import Pix2StructConfig, Pix2StructForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = ROOT / "tests" / "fixtures" / "pix2struct" / "config.json"

FULL_MAX_PATCHES = 2048
TINY_MAX_PATCHES = 64
START_RUNS = 3


def full_config() -> Pix2StructConfig:
    """google/deplot: Pix2Struct-base (12+12 layers, 768 wide, gated-GELU MLPs, T5-style decoder)."""
    return Pix2StructConfig(
        vision_config=dict(
            hidden_size=768,
            patch_embed_hidden_size=768,  # 16 x 16 x 3
            d_ff=2048,
            d_kv=64,
            num_attention_heads=12,
            num_hidden_layers=12,
            seq_len=4096,
            dense_act_fn="gelu_new",
            layer_norm_eps=1e-6,
        ),
        text_config=dict(
            vocab_size=50244,
            hidden_size=768,
            d_kv=64,
            d_ff=2048,
            num_layers=12,
            num_heads=12,
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            dense_act_fn="gelu_new",
            layer_norm_epsilon=1e-6,
            tie_word_embeddings=False,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        ),
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        is_vqa=True,
        # propagated to both sub-configs; the vision default (1e-10) would make the random
        # encoder weights ~0, so keep a sane scale
        initializer_range=0.02,
    )


def tiny_config() -> Pix2StructConfig:
    if not TINY_CONFIG.exists():
        sys.exit(f"{TINY_CONFIG} missing: run python3 scripts/pix2struct_fixtures.py first")
    return Pix2StructConfig.from_json_file(str(TINY_CONFIG))


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


def patch_grid(n: int) -> tuple[int, int]:
    """rows x cols = n with rows the largest divisor <= sqrt(n) (2048 -> 32 x 64, 64 -> 8 x 8)."""
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return rows, n // rows


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not batches or any(b < 1 for b in batches):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return batches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-patches", type=int, default=None,
                    help=f"patches of the one image (default {FULL_MAX_PATCHES}, {TINY_MAX_PATCHES} with --tiny)")
    ap.add_argument("--encoder-runs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="decode steps timed per batch size")
    ap.add_argument("--context", type=int, default=64, help="previous tokens in the self-attention cache")
    ap.add_argument("--batch-sizes", type=parse_batches, default=[1, 2, 4, 8], help="e.g. 1,2,4,8")
    ap.add_argument("--attn", choices=("default", "sdpa", "eager"), default="default",
                    help="attention implementation (default: what transformers picks, sdpa)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--tiny", action="store_true", help="tiny fixture config (smoke test)")
    args = ap.parse_args()
    if args.context < 1:
        ap.error("--context must be >= 1")
    if args.steps < 1 or args.encoder_runs < 1:
        ap.error("--steps and --encoder-runs must be >= 1")

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)

    cfg = tiny_config() if args.tiny else full_config()
    vc, tc = cfg.vision_config, cfg.text_config
    n_patches = args.max_patches or (TINY_MAX_PATCHES if args.tiny else FULL_MAX_PATCHES)
    rows, cols = patch_grid(n_patches)
    if max(rows, cols) >= vc.seq_len:
        sys.exit(f"--max-patches {n_patches}: grid {rows}x{cols} needs ids beyond the {vc.seq_len}-entry embedders")

    t0 = time.perf_counter()
    with torch.no_grad():
        if args.attn == "default":
            model = Pix2StructForConditionalGeneration(cfg).eval()
        else:
            model = Pix2StructForConditionalGeneration._from_config(cfg, attn_implementation=args.attn).eval()
    init_s = ms(t0) / 1000.0
    n_params = sum(p.numel() for p in model.parameters())
    enc_params = sum(p.numel() for p in model.encoder.parameters())
    attn_impl = model.config._attn_implementation
    assert model.encoder.config._attn_implementation == attn_impl == model.decoder.config._attn_implementation
    with torch.no_grad():
        assert all(bool(torch.isfinite(p.sum())) for p in model.parameters()), "non-finite weights"

    # bytes the decoder streams per step: every decoder weight (lm_head included, it is not
    # tied) except the token embedding table, of which one row per token is gathered
    dec = model.decoder
    decode_weight_bytes = sum(
        p.numel() * p.element_size() for name, p in dec.named_parameters() if not name.startswith("embed_tokens.")
    )
    dec_params = sum(p.numel() for p in dec.parameters())
    layers, heads, d_kv = tc.num_layers, tc.num_heads, tc.d_kv
    cross_kv_bytes = layers * 2 * heads * n_patches * d_kv * 4  # per sequence, float32
    self_kv_bytes = layers * 2 * heads * args.context * d_kv * 4

    name = "tiny" if args.tiny else "full"
    print(
        f"{name} DePlot (Pix2Struct): {n_params / 1e6:.1f}M params (encoder {enc_params / 1e6:.1f}M, "
        f"decoder {dec_params / 1e6:.1f}M), init {init_s:.1f}s, attention {attn_impl}, "
        f"threads {torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )

    results: dict = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "threads": torch.get_num_threads(),
        "attn_implementation": attn_impl,
        "config": {
            "name": name,
            "vision_layers": vc.num_hidden_layers,
            "vision_hidden": vc.hidden_size,
            "vision_heads": vc.num_attention_heads,
            "vision_d_ff": vc.d_ff,
            "patch_dim": vc.patch_embed_hidden_size,
            "text_layers": tc.num_layers,
            "text_hidden": tc.hidden_size,
            "text_heads": tc.num_heads,
            "text_d_kv": tc.d_kv,
            "text_d_ff": tc.d_ff,
            "vocab_size": tc.vocab_size,
            "is_vqa": cfg.is_vqa,
        },
        "dtype": "float32",
        "params": n_params,
        "encoder_params": enc_params,
        "decoder_params": dec_params,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        # (a) vision encoder on one image of n_patches valid patches
        patches = torch.randn(1, n_patches, 2 + vc.patch_embed_hidden_size, generator=g)
        idx = torch.arange(n_patches)
        patches[0, :, 0] = (idx // cols + 1).float()  # row ids from 1
        patches[0, :, 1] = (idx % cols + 1).float()  # column ids from 1
        mask = torch.ones(1, n_patches)

        def encoder():
            return model.encoder(flattened_patches=patches, attention_mask=mask)

        encoder_ms, encoder_all = median_ms(encoder, args.encoder_runs)
        enc = encoder().last_hidden_state
        assert tuple(enc.shape) == (1, n_patches, vc.hidden_size), enc.shape
        assert bool(torch.isfinite(enc).all()), "non-finite encoder output"
        print(f"(a) encoder, 1 image {n_patches} patches ({rows}x{cols}): {encoder_ms:.1f} ms "
              f"(median of {args.encoder_runs})")

        # (b) start one sequence: first decoder forward, computes the cross-attention K/V
        enc_out = BaseModelOutput(last_hidden_state=enc)
        start_ids = torch.full((1, 1), cfg.decoder_start_token_id, dtype=torch.long)

        def start():
            return model(encoder_outputs=enc_out, attention_mask=mask, decoder_input_ids=start_ids, use_cache=True)

        start_ms, start_all = median_ms(start, START_RUNS)
        out = start()
        assert tuple(out.logits.shape) == (1, 1, tc.vocab_size), out.logits.shape
        print(f"(b) start (decoder token 0 + cross-attention K/V of {layers} layers over {n_patches} positions): "
              f"{start_ms:.1f} ms (median of {START_RUNS})")

        # context: the start token + context-1 teacher-forced tokens in one forward
        base_cache = out.cache
        if args.context > 1:
            ctx_ids = torch.randint(2, tc.vocab_size, (1, args.context - 1), generator=g)
            out = model(encoder_outputs=enc_out, attention_mask=mask, decoder_input_ids=ctx_ids,
                        cache=base_cache, use_cache=True)
            base_cache = out.cache
        assert base_cache.get_seq_length() == args.context, base_cache.get_seq_length()
        for layer in range(layers):
            assert base_cache.is_updated[layer]
            cross = base_cache.cross_attention_cache.layers[layer]
            assert tuple(cross.keys.shape) == (1, heads, n_patches, d_kv), cross.keys.shape

        # (c) decode steps at several batch sizes
        decode = {}
        tps = {}
        decode_all = {}
        for b in args.batch_sizes:
            cache = copy.deepcopy(base_cache)
            cache.batch_repeat_interleave(b)  # every sequence gets its own copy of both caches
            enc_b = BaseModelOutput(last_hidden_state=enc.expand(b, -1, -1))
            mask_b = mask.expand(b, -1)
            tok = torch.randint(2, tc.vocab_size, (b, 1), generator=g)
            times = []
            for step in range(args.steps + 1):
                t0 = time.perf_counter()
                out = model(encoder_outputs=enc_b, attention_mask=mask_b, decoder_input_ids=tok,
                            cache=cache, use_cache=True)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                dt = ms(t0)
                cache = out.cache
                if step > 0:  # step 0 is the warm-up
                    times.append(dt)
            assert cache.get_seq_length() == args.context + args.steps + 1, cache.get_seq_length()
            assert tuple(cache.cross_attention_cache.layers[0].keys.shape) == (b, heads, n_patches, d_kv)
            med = statistics.median(times)
            decode[str(b)] = med
            decode_all[str(b)] = times
            tps[str(b)] = b / med * 1000.0
            print(f"(c) decode batch {b}: {med:.1f} ms/step, {tps[str(b)]:.1f} tok/s "
                  f"(median of {args.steps}, self cache {args.context + 1}..{args.context + args.steps}, "
                  f"cross cache {n_patches})")
            del cache, out

    print(f"decoder weights read per step: {decode_weight_bytes / 1e6:.1f} MB; "
          f"K/V cache per sequence: cross {cross_kv_bytes / 1e6:.1f} MB, self {self_kv_bytes / 1e6:.2f} MB "
          f"at {args.context} tokens")

    results.update(
        {
            "max_patches": n_patches,
            "patch_grid": [rows, cols],
            "encoder_ms": encoder_ms,
            "start_ms": start_ms,
            "context": args.context,
            "decode_ms_per_step": decode,
            "tokens_per_s": tps,
            "decode_weight_bytes": decode_weight_bytes,
            "cross_kv_bytes_per_seq": cross_kv_bytes,
            "self_kv_bytes_per_seq": self_kv_bytes,
            "encoder_runs_ms": encoder_all,
            "start_runs_ms": start_all,
            "decode_runs_ms": decode_all,
            "encoder_runs": args.encoder_runs,
            "steps": args.steps,
            "init_s": init_s,
            "notes": f"random weights, float32, torch.inference_mode; attention {attn_impl}; encoder on one image, "
            "all patches valid; start = first decoder forward incl. cross-attention K/V; decode cache = start + "
            "context-1 teacher-forced tokens, repeated per sequence; decode_weight_bytes = decoder weights "
            "+ lm_head, token embedding excluded",
        }
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
