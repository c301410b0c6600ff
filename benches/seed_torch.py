#!/usr/bin/env python3
"""PyTorch / transformers CPU baseline for the candle DETR and Table Transformer ports.

Builds the full-size architectures with RANDOM weights (nothing is downloaded; the timm
backbones are built with use_pretrained_backbone=False) and times only the model forward:

    detr-layout     DetrForObjectDetection (detector only, no mask head): timm resnet50 backbone,
                    d_model 256, 6+6 layers, 8 heads, ffn 2048, 100 queries, 11 labels, post-norm
                    (the architecture of cmarkea/detr-layout-detection). Preprocessing:
                    DetrImageProcessorPil, --size shortest,longest (default 800,1333).
    tatr-detection  TableTransformerForObjectDetection: timm resnet18, 15 queries, 2 labels.
                    Preprocessing: longest side resized to 800 (PIL bilinear), ImageNet mean/std.
    tatr-structure  TableTransformerForObjectDetection: timm resnet18, 125 queries, 6 labels.
                    Preprocessing: longest side resized to 1000 (PIL bilinear), ImageNet mean/std.

Batches are zero-padded bottom/right to the largest image in the batch, with a pixel_mask.

Run with the venv from tests/fixtures/detr/generate.py:

    python3 -m venv /work/pyenv-detr
    /work/pyenv-detr/bin/pip install torch transformers timm safetensors pillow numpy
    /work/pyenv-detr/bin/python benches/seed_torch.py --model detr-layout \
        --images page1.png page2.png --batch-sizes 1,2,4 --threads 2 --repeats 3 --warmup 1

--model takes one name, a comma-separated list, or "all". --size shortest,longest sets the
layout processor size; for the TATR models only its second value is used, as the longest side.
--tiny swaps in tiny configs (a smoke test that finishes in seconds; not a benchmark).

Images: for each batch size B the image list is cycled to at least B images and cut into
consecutive batches of B (the last one may be shorter). Every batch runs --warmup untimed and
--repeats timed forwards. Output, one JSON object per (model, batch size) on stdout:
ms_per_batch_median is the median over batches of each batch's median forward time;
ms_per_image_median is the median over batches of (batch median / images in the batch).
Input shapes go to stderr (and into the JSON as "input_shapes").
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from timm.models import register_model  # noqa: E402
from timm.models.resnet import BasicBlock, Bottleneck, _create_resnet  # noqa: E402
from transformers import (  # noqa: E402
    DetrConfig,
    DetrForObjectDetection,
    DetrImageProcessorPil,
    TableTransformerConfig,
    TableTransformerForObjectDetection,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# Tiny timm backbones for --tiny only (same layout as resnet50 / resnet18, tiny widths).
@register_model
def seed_torch_tiny_bottleneck(pretrained=False, **kwargs):
    return _create_resnet("resnet50", False, **dict(dict(block=Bottleneck, layers=(1, 1, 1, 1), channels=(8, 12, 16, 20)), **kwargs))


@register_model
def seed_torch_tiny_basic(pretrained=False, **kwargs):
    return _create_resnet("resnet18", False, **dict(dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(64, 12, 16, 20)), **kwargs))


FULL = dict(
    d_model=256,
    encoder_layers=6,
    decoder_layers=6,
    encoder_attention_heads=8,
    decoder_attention_heads=8,
    encoder_ffn_dim=2048,
    decoder_ffn_dim=2048,
    dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    auxiliary_loss=False,
)
TINY = dict(
    FULL,
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
)

MODELS = {
    "detr-layout": dict(
        cls=DetrForObjectDetection,
        config_cls=DetrConfig,
        backbone="resnet50",
        tiny_backbone="seed_torch_tiny_bottleneck",
        num_queries=100,
        num_labels=11,
        preprocess="detr",
        size=(800, 1333),
    ),
    "tatr-detection": dict(
        cls=TableTransformerForObjectDetection,
        config_cls=TableTransformerConfig,
        backbone="resnet18",
        tiny_backbone="seed_torch_tiny_basic",
        num_queries=15,
        num_labels=2,
        preprocess="max",
        size=(None, 800),
    ),
    "tatr-structure": dict(
        cls=TableTransformerForObjectDetection,
        config_cls=TableTransformerConfig,
        backbone="resnet18",
        tiny_backbone="seed_torch_tiny_basic",
        num_queries=125,
        num_labels=6,
        preprocess="max",
        size=(None, 1000),
    ),
}


def build_model(spec, tiny):
    config = spec["config_cls"](
        use_timm_backbone=True,
        backbone=spec["tiny_backbone"] if tiny else spec["backbone"],
        use_pretrained_backbone=False,
        num_queries=spec["num_queries"],
        num_labels=spec["num_labels"],
        **(TINY if tiny else FULL),
    )
    return spec["cls"](config).eval()


def preprocess_max(images, longest):
    """TATR-style: scale so the longest side == `longest` (PIL bilinear), ImageNet normalise,
    zero-pad bottom/right to the batch max, pixel_mask 1 on the image."""
    arrays = []
    for img in images:
        w, h = img.size
        scale = longest / max(w, h)
        resized = img.resize((int(round(scale * w)), int(round(scale * h))), Image.BILINEAR)
        x = np.asarray(resized, dtype=np.float32) / 255.0
        arrays.append(((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    hmax = max(a.shape[1] for a in arrays)
    wmax = max(a.shape[2] for a in arrays)
    pixel_values = np.zeros((len(arrays), 3, hmax, wmax), dtype=np.float32)
    pixel_mask = np.zeros((len(arrays), hmax, wmax), dtype=np.int64)
    for i, a in enumerate(arrays):
        pixel_values[i, :, : a.shape[1], : a.shape[2]] = a
        pixel_mask[i, : a.shape[1], : a.shape[2]] = 1
    return torch.from_numpy(pixel_values), torch.from_numpy(pixel_mask)


def make_batches(images, batch_size):
    pool = list(images)
    while len(pool) < batch_size:
        pool += images
    return [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all", help="detr-layout, tatr-detection, tatr-structure, a comma list, or all")
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--batch-sizes", default="1,2,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--size", default=None, help="shortest,longest (layout); TATR uses only longest")
    ap.add_argument("--tiny", action="store_true", help="tiny configs: smoke test only")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    names = list(MODELS) if args.model == "all" else args.model.split(",")
    for n in names:
        if n not in MODELS:
            sys.exit(f"unknown model {n!r}; choose from {', '.join(MODELS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    images = [Image.open(p).convert("RGB") for p in args.images]

    for name in names:
        spec = MODELS[name]
        shortest, longest = spec["size"]
        if args.size:
            s, l = (int(v) for v in args.size.split(","))
            shortest, longest = (s, l) if spec["preprocess"] == "detr" else (None, l)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = build_model(spec, args.tiny)
        build_s = time.perf_counter() - t0
        params = sum(p.numel() for p in model.parameters())
        print(f"# {name}: built in {build_s:.1f} s, {params / 1e6:.2f} M parameters, tiny={args.tiny}", file=sys.stderr)
        processor = DetrImageProcessorPil(size={"shortest_edge": shortest, "longest_edge": longest}) if spec["preprocess"] == "detr" else None

        for bs in batch_sizes:
            batch_ms, image_ms, shapes, runs = [], [], [], 0
            for batch in make_batches(images, bs):
                if processor is not None:
                    enc = processor(images=batch, return_tensors="pt")
                    pixel_values, pixel_mask = enc["pixel_values"], enc["pixel_mask"]
                else:
                    pixel_values, pixel_mask = preprocess_max(batch, longest)
                shapes.append(list(pixel_values.shape))
                print(f"# {name} bs={bs}: pixel_values {list(pixel_values.shape)} pixel_mask {list(pixel_mask.shape)}", file=sys.stderr)
                times = []
                with torch.inference_mode():
                    for _ in range(args.warmup):
                        model(pixel_values=pixel_values, pixel_mask=pixel_mask)
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        model(pixel_values=pixel_values, pixel_mask=pixel_mask)
                        times.append((time.perf_counter() - t) * 1e3)
                runs += len(times)
                med = statistics.median(times)
                batch_ms.append(med)
                image_ms.append(med / len(batch))
            print(
                json.dumps(
                    {
                        "model": name,
                        "batch_size": bs,
                        "images": sum(len(b) for b in make_batches(images, bs)),
                        "threads": args.threads,
                        "ms_per_image_median": round(statistics.median(image_ms), 3),
                        "ms_per_batch_median": round(statistics.median(batch_ms), 3),
                        "runs": runs,
                        "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "timm": timm.__version__,
                        "tiny": args.tiny,
                        "input_shapes": shapes,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
