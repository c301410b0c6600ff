#!/usr/bin/env python3
"""Characters per token of GOT-OCR 2.0's tokenizer (Qwen byte-level BPE) on a PDF corpus.

pipebench's GOT oracle, running untrained weights, sizes each text region's output from its
reference text: the PDF text layer with all whitespace removed. Its estimator
(src/models/got_ocr2/stage.rs, token_estimate) counts every digit and every other non-letter
character as one token and letters as ceil(letters / k); this script fits k (3.85) on the
corpus's paragraph blocks against Qwen's tokenizer, alongside plainer estimators (non-ws chars
per token; digits + other / k), and counts the tokens of GOT's fixed prompt pieces.

    python3 -m pip install dashscope==2.0.2 tiktoken pypdfium2 pdfminer.six
    python3 benches/qwen_token_stats.py corpora/sample

Tokenizer: `qwen.tiktoken` (151643 ranks) from the `dashscope` 2.0.2 wheel
(dashscope/resources/qwen.tiktoken, Apache-2.0) with Qwen's pre-tokenizer regex and the
special tokens <|endoftext|>=151643, <|im_start|>=151644, <|im_end|>=151645; text is NFC
normalized before encoding, as Qwen's tokenizer does. GOT's <img>, </img>, <imgpad> are added
tokens 151857-151859 (not in the tiktoken file) and are counted as one token each.

Pages: pypdfium2 (pdfium, as pipebench), each page's text as pdfium gives it (its inferred
spaces and line breaks), with CRLF -> LF and pdfium's end-of-line hyphen marker U+FFFE -> "-".
Non-whitespace is Rust's char::is_whitespace complement, as pipebench counts.

Paragraph blocks: pdfium's page text has no blank lines, so blocks come from pdfminer.six's
extract_text (layout analysis; it separates text boxes by blank lines), split on blank lines;
blocks with "(cid:" (unmapped glyphs) are skipped.
"""
import base64
import math
import os
import re
import statistics
import sys
import time
import unicodedata

import dashscope
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import tiktoken

# Qwen's pre-tokenizer (dashscope/tokenizers/qwen_tokenizer.py, Qwen's tokenization_qwen.py).
PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
GOT_ADDED = {"<img>": 151857, "</img>": 151858, "<imgpad>": 151859}
SYSTEM = "You should follow the instructions carefully and explain your answers in detail."

# Rust's char::is_whitespace (Unicode White_Space); Python's str.isspace also takes U+001C-1F.
RUST_WS = set(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def encoding():
    path = os.path.join(os.path.dirname(dashscope.__file__), "resources", "qwen.tiktoken")
    with open(path, "rb") as f:
        ranks = {
            base64.b64decode(tok): int(rank)
            for tok, rank in (line.split() for line in f.read().splitlines() if line)
        }
    assert len(ranks) == 151643, len(ranks)
    return tiktoken.Encoding("Qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=SPECIALS)


ENC = encoding()


def encode(text):
    return ENC.encode(unicodedata.normalize("NFC", text), allowed_special="all", disallowed_special=())


def nonws(text):
    return sum(1 for c in text if c not in RUST_WS)


DIGITS = frozenset("0123456789")


def digit_split(text):
    """(ASCII digits, other non-whitespace chars): Qwen's pre-tokenizer makes each \\p{N} its
    own piece and every ASCII digit is a single token, so digits cost one token each."""
    d = o = 0
    for c in text:
        if c in DIGITS:
            d += 1
        elif c not in RUST_WS:
            o += 1
    return d, o


def clean(text):
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")


def invisible_nonws(tp):
    """Non-whitespace characters drawn invisibly (render mode 3: hidden OCR layers), which
    pipebench's text layer leaves out."""
    n = 0
    for i in range(tp.count_chars()):
        obj = pdfium_raw.FPDFText_GetTextObject(tp, i)
        if obj and pdfium_raw.FPDFTextObj_GetTextRenderMode(obj) == pdfium_raw.FPDF_TEXTRENDERMODE_INVISIBLE:
            if chr(pdfium_raw.FPDFText_GetUnicode(tp, i)) not in RUST_WS:
                n += 1
    return n


def pct(xs, q):
    """Percentile q (0-100), linear interpolation."""
    xs = sorted(xs)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def prompt_tokens(query):
    """GOT's one-tile prompt (256 image tokens), added tokens counted one each."""
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n<img>"
        + "<imgpad>" * 256
        + f"</img>\n{query}<|im_end|><|im_start|>assistant\n"
    )
    ids = []
    for piece in re.split(r"(<img>|</img>|<imgpad>)", text):
        if piece in GOT_ADDED:
            ids.append(GOT_ADDED[piece])
        elif piece:
            ids.extend(encode(piece))
    return ids


def est_digits(k):
    """tokens ~ digits + ceil(other_nonws / k)."""
    return lambda c, d: d + math.ceil((c - d) / k)


def est_plain(k):
    """tokens ~ ceil(nonws / k)."""
    return lambda c, d: math.ceil(c / k)


def fit_k(items):
    """items: (nonws, tokens, digits). Returns (k minimizing total |estimate - tokens| over a
    0.01 grid, that total, k making the totals equal)."""
    best = None
    for i in range(100, 801):
        k = i / 100
        f = est_digits(k)
        err = sum(abs(f(c, d) - t) for c, t, d in items)
        if best is None or err < best[1]:
            best = (k, err)
    tt = sum(t for _, t, _ in items)
    td = sum(d for _, _, d in items)
    to = sum(c - d for c, _, d in items)
    return best[0], best[1], to / (tt - td)


def digit_estimator(blocks, pages):
    """Digit-aware token estimate from whitespace-free reference text."""
    print("\n== digit-aware estimator: tokens ~ digits + ceil(other_nonws / k) ==")
    print("digits = ASCII 0-9; other_nonws = remaining non-whitespace (Rust char::is_whitespace)")
    # The digit rule: n ASCII digits -> n tokens.
    import random
    rng = random.Random(0)
    assert all(len(encode(d)) == 1 for d in "0123456789")
    bad = 0
    for n in range(1, 201):
        for _ in range(20):
            s = "".join(rng.choice("0123456789") for _ in range(n))
            bad += len(encode(s)) != n
    print(f"digit rule: len(encode(n random ASCII digits)) == n for n = 1..200, 20 strings each: "
          f"{'holds' if not bad else f'{bad} failures'}")
    for s in ["7", "2024", "1234567890", "3.14159", "$1,234.56", "12/31/2023", "x86_64", "v2"]:
        ids = encode(s)
        d, o = digit_split(s)
        print(f"  {s!r}: {len(ids)} tokens {ids} (digits {d}, other {o})")

    page_items = [(p[1], p[2], p[4]) for p in pages if p[2] > 0]
    sets = [("pages (pdfium, text > 0)", page_items)]
    if blocks:
        sets.insert(0, ("blocks (pdfminer)", blocks))
    fits = {}
    for label, items in sets:
        tc = sum(c for c, _, _ in items)
        tt = sum(t for _, t, _ in items)
        td = sum(d for _, _, d in items)
        k_abs, err, k_eq = fit_k(items)
        fits[label] = k_eq
        print(f"{label}: {len(items)} items, nonws {tc}, tokens {tt}, digits {td} "
              f"({100 * td / tc:.1f}% of nonws, {100 * td / tt:.1f}% of tokens)")
        print(f"  k minimizing sum|err| = {k_abs:.2f} (sum|err| {err}, "
              f"{100 * err / tt:.1f}% of tokens); k with equal totals = {k_eq:.4f}")
    k = round(fits[sets[0][0]], 2)
    print(f"chosen k = {k:.2f} (equal totals on {sets[0][0]}); estimate/actual per item:")
    for label, items in sets:
        print(f" {label}" + (" (percentiles over items with >= 200 nonws)" if "pages" in label else ""))
        pitems = [x for x in items if x[0] >= 200] if "pages" in label else items
        for name, f in [(f"digits + ceil(other/{k:.2f})", est_digits(k)),
                        ("ceil(nonws/2.40)", est_plain(2.40)),
                        ("ceil(nonws/3.1)", est_plain(3.1))]:
            rel = [f(c, d) / t for c, t, d in pitems]
            tot = sum(f(c, d) for c, _, d in items) / sum(t for _, t, _ in items)
            abs_err = sum(abs(f(c, d) - t) for c, t, d in items)
            print(f"  {name:28} p10 {pct(rel, 10):.3f}  p50 {pct(rel, 50):.3f}  "
                  f"p90 {pct(rel, 90):.3f}  total est/actual {tot:.3f}  sum|err| {abs_err}")


def letter_estimator(texts, tokens, k_used=3.85):
    """pipebench's estimator (src/models/got_ocr2/stage.rs, token_estimate): every digit and
    every other non-letter, non-whitespace character one token, letters ceil(letters / k).
    Fits k over the paragraph blocks (equal totals) and reports estimate/actual at k_used."""
    print(f"\n== pipebench's estimator: symbols 1 token each + ceil(letters / k) ==")
    counts = []
    for t in texts:
        letters = sum(1 for c in t if c.isalpha())
        other = sum(1 for c in t if c not in RUST_WS and not c.isalpha())
        counts.append((letters, other))
    tl = sum(l for l, _ in counts)
    to = sum(o for _, o in counts)
    tt = sum(tokens)
    print(f"blocks {len(texts)}: letters {tl}, symbols {to}, tokens {tt}; "
          f"k with equal totals = {tl / (tt - to):.3f}")
    est = [o + math.ceil(l / k_used) for l, o in counts]
    r = [e / t for e, t in zip(est, tokens)]
    print(f"k = {k_used}: total estimate/actual {sum(est) / tt:.3f}; per block p10 {pct(r, 10):.3f} "
          f"p50 {statistics.median(r):.3f} p90 {pct(r, 90):.3f}; total |error| "
          f"{sum(abs(e - t) for e, t in zip(est, tokens))}")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "corpora/sample"
    t0 = time.perf_counter()
    pdfs = sorted(f for f in os.listdir(root) if f.lower().endswith(".pdf"))
    print(f"tokenizer: qwen.tiktoken ({ENC.n_vocab} ids incl. 3 specials), tiktoken "
          f"{tiktoken.__version__}, dashscope {dashscope.__version__}, pypdfium2 "
          f"{pdfium.PYPDFIUM_INFO}, pdfium {pdfium.PDFIUM_INFO}")

    # Pages (pdfium).
    pages = []  # (doc, nonws, tokens, invisible nonws, ascii digits)
    for name in pdfs:
        doc = pdfium.PdfDocument(os.path.join(root, name))
        for page in doc:
            tp = page.get_textpage()
            text = clean(tp.get_text_range())
            pages.append((name, nonws(text), len(encode(text)) if text else 0, invisible_nonws(tp),
                          digit_split(text)[0]))
            tp.close()
            page.close()
        doc.close()
    tot_c = sum(p[1] for p in pages)
    tot_t = sum(p[2] for p in pages)
    big = [p[1] / p[2] for p in pages if p[1] >= 200]
    print(f"\n== pages (pdfium text), {len(pdfs)} documents, {len(pages)} pages ==")
    print(f"overall sum(nonws)/sum(tokens) = {tot_c}/{tot_t} = {tot_c / tot_t:.3f}")
    print(f"median over {len(big)} pages with >= 200 non-ws chars = {statistics.median(big):.3f} "
          f"(p10 {pct(big, 10):.3f}, p90 {pct(big, 90):.3f})")
    vis = [p for p in pages if 2 * p[3] <= p[1]]
    vc, vt = sum(p[1] for p in vis), sum(p[2] for p in vis)
    vbig = [p[1] / p[2] for p in vis if p[1] >= 200]
    print(f"without {len(pages) - len(vis)} pages whose text is mostly invisible (hidden OCR "
          f"layer; pipebench's reference skips it): overall {vc / vt:.3f}, median >= 200 "
          f"{statistics.median(vbig):.3f} over {len(vbig)} pages")
    print(f"{'document':32} {'pages':>5} {'nonws':>7} {'tokens':>7} {'ratio':>6} {'median>=200':>11}"
          f" {'invisible':>9}")
    for name in pdfs:
        ps = [p for p in pages if p[0] == name]
        c, t = sum(p[1] for p in ps), sum(p[2] for p in ps)
        r = [p[1] / p[2] for p in ps if p[1] >= 200]
        print(f"{name:32} {len(ps):5d} {c:7d} {t:7d} "
              f"{(c / t if t else float('nan')):6.3f} "
              f"{(f'{statistics.median(r):.3f}' if r else '-'):>11} "
              f"{sum(p[3] for p in ps):9d}")

    # Paragraph blocks (pdfminer.six text boxes, blank-line separated).
    blocks = None  # (nonws, tokens, ascii digits)
    try:
        from pdfminer.high_level import extract_text
        import pdfminer
    except ImportError:
        print("\n(pdfminer.six not installed: no paragraph-block figures)")
    else:
        blocks, skipped = [], 0
        block_texts = []
        for name in pdfs:
            text = clean(extract_text(os.path.join(root, name)))
            for b in re.split(r"\n[ \t]*\n|\x0c", text):
                c = nonws(b)
                if c < 40:
                    continue
                if "(cid:" in b:
                    skipped += 1
                    continue
                blocks.append((c, len(encode(b.strip())), digit_split(b)[0]))
                block_texts.append(b)
        rs = [c / t for c, t, _ in blocks]
        print(f"\n== paragraph blocks (pdfminer.six {pdfminer.__version__}, >= 40 non-ws chars, "
              f"{len(blocks)} blocks, {skipped} with (cid:) skipped) ==")
        print(f"median {statistics.median(rs):.3f}  p10 {pct(rs, 10):.3f}  p90 {pct(rs, 90):.3f}  "
              f"(sum ratio {sum(b[0] for b in blocks) / sum(b[1] for b in blocks):.3f})")

    digit_estimator(blocks, pages)
    if blocks:
        letter_estimator(block_texts, [t for _, t, _ in blocks])

    # Prompt pieces.
    print("\n== prompt pieces ==")
    for s in [f"system\n{SYSTEM}", "user\n", "\n OCR: ", "\n OCR with format: ", "assistant\n",
              "\nOCR: ", " "]:
        ids = encode(s)
        print(f"{s!r}: {len(ids)} tokens {ids}")
    for q in [" OCR: ", " OCR with format: "]:
        ids = prompt_tokens(q)
        text_part = len(ids) - 256 - 2
        print(f"one-tile GOT prompt, query {q!r}: {len(ids)} tokens "
              f"(256 <imgpad> + <img> + </img> + {text_part} others)")
    print(f"\nruntime {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
