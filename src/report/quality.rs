//! Output quality: the character error rate (CER) of OCR against the PDF's own text layer.
//!
//! Born-digital pages carry their text with character boxes, which makes them free ground
//! truth. Each ground-truth character goes to the OCR line whose box contains its centre (the
//! smallest such box); per line, the edit distance between the OCR text and the line's
//! ground-truth characters (in pdfium's order) counts as errors; ground-truth characters that no
//! OCR line covers count as missed (deletions). Whitespace is ignored on both sides: PDF text
//! layers encode spaces inconsistently (pdfium infers many of them). Pages without a visible
//! text layer (scans) are not measured. OCR text outside every ground-truth character
//! (hallucinations on figures) is counted only where it falls in a line that has ground truth.

use super::schema::{CerReport, PageCer};
use crate::corpus::Corpus;
use crate::corpus::render::TextChar;
use crate::pipeline::PageRecord;

/// CER counts for one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CerCounts {
    /// Non-whitespace ground-truth characters.
    pub reference_chars: usize,
    /// Edit operations within matched lines.
    pub edits: usize,
    /// Ground-truth characters outside every OCR line.
    pub missed: usize,
}

impl CerCounts {
    pub fn errors(&self) -> usize {
        self.edits + self.missed
    }

    pub fn cer(&self) -> f64 {
        if self.reference_chars == 0 {
            0.0
        } else {
            self.errors() as f64 / self.reference_chars as f64
        }
    }

    pub fn add(&mut self, o: &CerCounts) {
        self.reference_chars += o.reference_chars;
        self.edits += o.edits;
        self.missed += o.missed;
    }
}

/// What CER reads: a box in page pixels and the text recognized in it.
pub type OcrText<'a> = ([f32; 4], &'a str);

/// The OCR text of a page output: its recognized lines (independent of how layout grouped
/// them), or, for outputs without lines, its regions' text.
pub fn ocr_texts(out: &crate::page::PageOutput) -> Vec<OcrText<'_>> {
    if out.lines.is_empty() {
        out.regions
            .iter()
            .filter_map(|r| r.text.as_deref().map(|t| (r.bbox, t)))
            .collect()
    } else {
        out.lines
            .iter()
            .map(|l| (l.bbox, l.text.as_str()))
            .collect()
    }
}

/// CER counts of a page's OCR lines against its text layer.
pub fn page_cer(lines: &[OcrText<'_>], truth: &[TextChar]) -> CerCounts {
    let mut per_line: Vec<String> = vec![String::new(); lines.len()];
    let mut counts = CerCounts {
        reference_chars: truth.len(),
        ..Default::default()
    };
    for t in truth {
        let (cx, cy) = ((t.bbox[0] + t.bbox[2]) / 2.0, (t.bbox[1] + t.bbox[3]) / 2.0);
        let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
        let owner = lines
            .iter()
            .enumerate()
            .filter(|(_, (b, _))| b[0] <= cx && cx <= b[2] && b[1] <= cy && cy <= b[3])
            .min_by(|a, b| area(&a.1.0).total_cmp(&area(&b.1.0)))
            .map(|(i, _)| i);
        match owner {
            Some(i) => per_line[i].push(t.ch),
            None => counts.missed += 1,
        }
    }
    for ((_, text), truth_chars) in lines.iter().zip(&per_line) {
        if truth_chars.is_empty() {
            continue;
        }
        counts.edits += super::agreement::char_errors(text, truth_chars);
    }
    counts
}

/// Measures OCR against each processed page's text layer (after the run: not timed). Pages
/// without a visible text layer are counted but not measured.
pub fn measure_ocr_cer(
    corpus: &Corpus,
    records: &[PageRecord],
    spec: &crate::corpus::render::RenderSpec,
) -> CerReport {
    let mut renderer = crate::corpus::render::Renderer::new();
    let mut total = CerCounts::default();
    let (mut measured, mut without) = (0u64, 0u64);
    let mut pages = Vec::new();
    let mut sorted: Vec<&PageRecord> = records.iter().filter(|r| r.ok).collect();
    sorted.sort_by_key(|r| r.page.global);
    for r in sorted {
        let path = &corpus.documents[r.page.doc as usize].path;
        let truth = match renderer
            .document(path)
            .and_then(|d| d.text_layer(r.page.page, spec))
        {
            Ok(t) if !t.is_empty() => t,
            _ => {
                without += 1;
                continue;
            }
        };
        let c = page_cer(&ocr_texts(&r.output), &truth);
        total.add(&c);
        measured += 1;
        pages.push(PageCer {
            id: r.id.to_string(),
            reference_chars: c.reference_chars as u64,
            errors: c.errors() as u64,
            cer: c.cer(),
        });
    }
    CerReport {
        method: "reference = the PDF's visible text layer (pdfium characters, boxes scaled to the rendered page); each reference character goes to the smallest OCR line containing its centre; edit distance per line plus uncovered reference characters; whitespace ignored".into(),
        pages_measured: measured,
        pages_without_text_layer: without,
        reference_chars: total.reference_chars as u64,
        edits: total.edits as u64,
        missed: total.missed as u64,
        cer: total.cer(),
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, bbox: [f32; 4]) -> OcrText<'_> {
        (bbox, text)
    }

    fn chars(s: &str, y: f32) -> Vec<TextChar> {
        s.chars()
            .enumerate()
            .filter(|(_, c)| !c.is_whitespace())
            .map(|(i, ch)| TextChar {
                ch,
                bbox: [i as f32 * 10.0, y, i as f32 * 10.0 + 9.0, y + 10.0],
            })
            .collect()
    }

    #[test]
    fn perfect_ocr_has_zero_cer_regardless_of_spaces() {
        let truth = chars("Hello world", 0.0);
        let c = page_cer(&[line("Hello  world", [0.0, 0.0, 200.0, 10.0])], &truth);
        assert_eq!(
            c,
            CerCounts {
                reference_chars: 10,
                edits: 0,
                missed: 0
            }
        );
    }

    #[test]
    fn substitutions_and_missed_lines_count() {
        let mut truth = chars("abcd", 0.0);
        truth.extend(chars("efgh", 50.0));
        // First line read with one error; second line not detected at all.
        let c = page_cer(&[line("abXd", [0.0, 0.0, 100.0, 10.0])], &truth);
        assert_eq!((c.edits, c.missed, c.reference_chars), (1, 4, 8));
        assert!((c.cer() - 5.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn characters_go_to_the_line_that_contains_them() {
        let mut truth = chars("top", 0.0);
        truth.extend(chars("low", 20.0));
        let lines = [
            line("low", [0.0, 20.0, 100.0, 30.0]),
            line("top", [0.0, 0.0, 100.0, 10.0]),
        ];
        assert_eq!(page_cer(&lines, &truth).errors(), 0);
    }
}
