//! CTC greedy decoding for the recognizer, and its dictionaries.
//!
//! Greedy (best-path) decoding: take the most probable class at each time step, merge runs of
//! the same class, drop the blank (class 0). The line's confidence is the mean probability of
//! the kept steps, as PaddleOCR reports it.

/// Class index → text. Index 0 is the CTC blank.
#[derive(Debug, Clone, PartialEq)]
pub struct Dictionary {
    entries: Vec<String>,
}

impl Dictionary {
    /// PP-OCRv5's `ppocr_keys_v5.txt`: already index-aligned (line 0 `blank`, the last line a
    /// single space). Lines are split on `\n` only: a space is a real entry.
    pub fn from_aligned_lines(text: &str) -> Self {
        let mut entries: Vec<String> = text.split('\n').map(str::to_string).collect();
        if entries.last().is_some_and(String::is_empty) {
            entries.pop();
        }
        Self { entries }
    }

    /// PP-OCRv4's character list (the ONNX metadata key `character`, one per line): PaddleOCR
    /// prepends the blank and appends a space.
    pub fn from_character_list(text: &str) -> Self {
        let mut entries = vec!["blank".to_string()];
        entries.extend(
            text.split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
        entries.push(" ".to_string());
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, class: usize) -> Option<&str> {
        self.entries.get(class).map(String::as_str)
    }
}

/// A decoded line.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    /// Mean probability of the kept steps (0 for an empty line).
    pub confidence: f32,
    /// The time steps that produced characters.
    pub steps: Vec<usize>,
}

/// Decodes one line from its probabilities `[steps × classes]` (row-major).
pub fn greedy_decode(probs: &[f32], classes: usize, dict: &Dictionary) -> Decoded {
    decode_with(probs, classes, dict, |_, max| max)
}

/// Decodes one line from its logits `[steps × classes]`: the same result as
/// [`greedy_decode`] on the softmax, without computing it. The argmax of the logits is the
/// argmax of the probabilities, and the probability of a kept step is
/// `1 / Σ exp(logit - max)`, computed only for the kept steps.
pub fn greedy_decode_logits(logits: &[f32], classes: usize, dict: &Dictionary) -> Decoded {
    decode_with(logits, classes, dict, |row, max| {
        1.0 / row.iter().map(|&v| (v - max).exp()).sum::<f32>()
    })
}

/// Best path over `scores`; `confidence(row, max)` gives a kept step's probability.
fn decode_with(
    scores: &[f32],
    classes: usize,
    dict: &Dictionary,
    confidence: impl Fn(&[f32], f32) -> f32,
) -> Decoded {
    let mut text = String::new();
    let mut steps = Vec::new();
    let mut sum = 0.0f32;
    let mut prev = usize::MAX;
    for (t, row) in scores.chunks_exact(classes).enumerate() {
        let (best, max) =
            row.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        if best != 0 && best != prev {
            if let Some(s) = dict.get(best) {
                text.push_str(s);
            }
            steps.push(t);
            sum += confidence(row, max);
        }
        prev = best;
    }
    let confidence = if steps.is_empty() {
        0.0
    } else {
        sum / steps.len() as f32
    };
    Decoded {
        text,
        confidence,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::from_aligned_lines("blank\na\nb\n \n")
    }

    #[test]
    fn aligned_dictionary_keeps_the_space_entry() {
        let d = dict();
        assert_eq!(d.len(), 4);
        assert_eq!(d.get(3), Some(" "));
    }

    #[test]
    fn character_list_gets_blank_and_space() {
        let d = Dictionary::from_character_list("x\ny");
        assert_eq!(
            (d.get(0), d.get(1), d.get(3), d.len()),
            (Some("blank"), Some("x"), Some(" "), 4)
        );
    }

    #[test]
    fn repeats_merge_and_blanks_separate() {
        // steps: a a blank a b b space b
        let seq = [1usize, 1, 0, 1, 2, 2, 3, 2];
        let mut probs = vec![0.0f32; seq.len() * 4];
        for (t, c) in seq.iter().enumerate() {
            probs[t * 4 + c] = 0.9;
            probs[t * 4 + (c + 1) % 4] = 0.1;
        }
        let d = greedy_decode(&probs, 4, &dict());
        assert_eq!(d.text, "aab b");
        assert_eq!(d.steps, vec![0, 3, 4, 6, 7]);
        assert!((d.confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn decoding_logits_equals_decoding_probabilities() {
        let logits: Vec<f32> = (0..6 * 4)
            .map(|i| ((i * 37 % 11) as f32) * 0.7 - 3.0)
            .collect();
        let probs: Vec<f32> = logits
            .chunks(4)
            .flat_map(|r| {
                let m = r.iter().copied().fold(f32::MIN, f32::max);
                let z: f32 = r.iter().map(|v| (v - m).exp()).sum();
                r.iter().map(move |v| (v - m).exp() / z).collect::<Vec<_>>()
            })
            .collect();
        let a = greedy_decode(&probs, 4, &dict());
        let b = greedy_decode_logits(&logits, 4, &dict());
        assert_eq!((a.text.as_str(), &a.steps), (b.text.as_str(), &b.steps));
        assert!((a.confidence - b.confidence).abs() < 1e-6);
    }

    #[test]
    fn all_blank_is_empty_with_zero_confidence() {
        let probs = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let d = greedy_decode(&probs, 4, &dict());
        assert_eq!((d.text.as_str(), d.confidence), ("", 0.0));
    }
}
