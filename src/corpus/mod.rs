//! The corpus: discovery of PDFs, stable document and page ids, page counts, a corpus hash.
//!
//! Ids are paths relative to the folder given on the command line (with `/` separators), so
//! they are the same on every machine and in every report of the same corpus. Pages are
//! numbered from 1 in ids (`doc.pdf#p3`), from 0 in code.

pub mod pdfium;
pub mod render;
pub mod render_pool;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::assets::{hex, sha256_file};
use render::{OpenDocument, RenderError};

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    #[error("no PDF files found in {0} (searched recursively for *.pdf)")]
    Empty(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One input document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Stable id: the path relative to its corpus root.
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// Page count (0 until probed, or if the document failed to open).
    pub pages: u32,
    /// Why the document cannot be rendered, if it cannot.
    pub error: Option<RenderError>,
}

/// A page reference: its index in the whole run, its document, its 0-based page number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageRef {
    pub global: u32,
    pub doc: u32,
    pub page: u32,
}

/// Which of a corpus's pages a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageBudget {
    /// Every page.
    All,
    /// The first `n` pages, in corpus order.
    First(usize),
    /// `n` pages spread over every document ([`Corpus::pages_spread`]).
    Spread(usize),
}

impl PageBudget {
    /// `--max-pages`: the first `n` pages, or every page without a limit.
    pub fn first(max: Option<usize>) -> Self {
        max.map_or(Self::All, Self::First)
    }
}

#[derive(Debug, Clone)]
pub struct Corpus {
    /// The paths given on the command line.
    pub inputs: Vec<PathBuf>,
    /// A short name for file names and titles (the first input's file or folder name).
    pub name: String,
    pub documents: Vec<Document>,
    /// sha256 over the sorted (id, file sha256) pairs.
    pub hash: String,
}

impl Corpus {
    /// Finds the PDFs under `inputs` (folders recursively, files as given) and hashes them.
    pub fn discover(inputs: &[PathBuf]) -> Result<Self, CorpusError> {
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        for input in inputs {
            let meta =
                std::fs::metadata(input).map_err(|_| CorpusError::NotFound(input.clone()))?;
            if meta.is_dir() {
                let mut files = Vec::new();
                walk(input, &mut files)?;
                for f in files {
                    let rel = f.strip_prefix(input).unwrap_or(&f);
                    let id = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    found.push((id, f));
                }
            } else {
                let id = input.file_name().map_or_else(
                    || input.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                found.push((id, input.clone()));
            }
        }
        if found.is_empty() {
            let names = inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CorpusError::Empty(names));
        }
        found.sort();
        dedupe_ids(&mut found);
        let mut documents = Vec::with_capacity(found.len());
        let mut corpus_hash = Sha256::new();
        for (id, path) in found {
            let bytes = std::fs::metadata(&path)
                .map_err(|source| CorpusError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            let sha256 = sha256_file(&path).map_err(|e| CorpusError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            corpus_hash.update(id.as_bytes());
            corpus_hash.update([0]);
            corpus_hash.update(sha256.as_bytes());
            corpus_hash.update([b'\n']);
            documents.push(Document {
                id,
                path,
                bytes,
                sha256,
                pages: 0,
                error: None,
            });
        }
        let name = inputs
            .first()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "corpus".to_string());
        Ok(Self {
            inputs: inputs.to_vec(),
            name,
            documents,
            hash: hex(&corpus_hash.finalize()),
        })
    }

    /// Opens every document once with pdfium to count pages; failures are kept per document.
    pub fn probe(&mut self) {
        for d in &mut self.documents {
            match OpenDocument::open(&d.path) {
                Ok(doc) if doc.page_count() == 0 => d.error = Some(RenderError::NoPages),
                Ok(doc) => d.pages = doc.page_count(),
                Err(e) => d.error = Some(e),
            }
        }
    }

    /// Every page of every openable document, in corpus order, at most `max` of them.
    pub fn pages(&self, max: Option<usize>) -> Vec<PageRef> {
        let mut out = Vec::new();
        for (di, d) in self.documents.iter().enumerate() {
            if d.error.is_some() {
                continue;
            }
            for p in 0..d.pages {
                if max.is_some_and(|m| out.len() >= m) {
                    return out;
                }
                out.push(PageRef {
                    global: out.len() as u32,
                    doc: di as u32,
                    page: p,
                });
            }
        }
        out
    }

    /// `n` pages spread over the documents, in corpus order, so a demo or a benchmark sees
    /// every kind of document rather than mostly the longest: each document gets an equal
    /// share as far as its pages go (a round of one page per document, then another, over the
    /// documents with pages left), and its share is spread evenly over its pages, first page
    /// first. Fewer pages than documents: the first page of `n` documents spread evenly over
    /// the corpus. Every page when the corpus has no more than `n`.
    pub fn pages_spread(&self, n: usize) -> Vec<PageRef> {
        let all = self.pages(None);
        if n >= all.len() {
            return all;
        }
        // Per openable document: its first index in `all` and its page count.
        let mut docs: Vec<(usize, usize)> = Vec::new();
        for (i, p) in all.iter().enumerate() {
            match docs.last_mut() {
                Some((first, pages)) if all[*first].doc == p.doc => *pages += 1,
                _ => docs.push((i, 1)),
            }
        }
        let mut share = vec![0usize; docs.len()];
        if n < docs.len() {
            for k in 0..n {
                share[k * docs.len() / n] = 1;
            }
        } else {
            // Ends: n < all.len(), so some document always has a page left.
            let mut left = n;
            while left > 0 {
                for (s, &(_, pages)) in share.iter_mut().zip(&docs) {
                    if left > 0 && *s < pages {
                        *s += 1;
                        left -= 1;
                    }
                }
            }
        }
        docs.iter()
            .zip(share)
            .flat_map(|(&(first, pages), k)| (0..k).map(move |j| first + j * pages / k))
            .map(|i| all[i])
            .collect()
    }

    /// The pages a `budget` takes.
    pub fn select(&self, budget: PageBudget) -> Vec<PageRef> {
        match budget {
            PageBudget::All => self.pages(None),
            PageBudget::First(n) => self.pages(Some(n)),
            PageBudget::Spread(n) => self.pages_spread(n),
        }
    }

    pub fn page_id(&self, p: &PageRef) -> String {
        format!("{}#p{}", self.documents[p.doc as usize].id, p.page + 1)
    }

    pub fn total_pages(&self) -> u64 {
        self.documents.iter().map(|d| d.pages as u64).sum()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let rd = std::fs::read_dir(dir).map_err(|source| CorpusError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| CorpusError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|source| CorpusError::Io {
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Makes ids unique (two inputs can hold the same relative path) by suffixing `~2`, `~3`…
fn dedupe_ids(found: &mut [(String, PathBuf)]) {
    let mut seen = std::collections::HashMap::<String, u32>::new();
    for (id, _) in found.iter_mut() {
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            *id = format!("{id}~{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_is_recursive_sorted_and_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("b/c")).expect("mkdir");
        std::fs::write(dir.path().join("b/c/z.PDF"), b"%PDF-1.4 z").expect("write");
        std::fs::write(dir.path().join("a.pdf"), b"%PDF-1.4 a").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"skip me").expect("write");
        let c = Corpus::discover(&[dir.path().to_path_buf()]).expect("discover");
        let ids: Vec<_> = c.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a.pdf", "b/c/z.PDF"]);
        let again = Corpus::discover(&[dir.path().to_path_buf()]).expect("discover");
        assert_eq!(c.hash, again.hash, "hash is stable");
        std::fs::write(dir.path().join("a.pdf"), b"%PDF-1.4 changed").expect("write");
        let changed = Corpus::discover(&[dir.path().to_path_buf()]).expect("discover");
        assert_ne!(c.hash, changed.hash, "hash follows content");
    }

    #[test]
    fn empty_and_missing_inputs_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Corpus::discover(&[dir.path().to_path_buf()]),
            Err(CorpusError::Empty(_))
        ));
        assert!(matches!(
            Corpus::discover(&[dir.path().join("nope")]),
            Err(CorpusError::NotFound(_))
        ));
    }

    #[test]
    fn duplicate_ids_get_suffixes() {
        let mut v = vec![
            ("a.pdf".to_string(), PathBuf::from("x")),
            ("a.pdf".to_string(), PathBuf::from("y")),
        ];
        dedupe_ids(&mut v);
        assert_eq!(v[1].0, "a.pdf~2");
    }

    #[test]
    fn pages_skip_failed_documents_and_respect_max() {
        let doc = |pages, error| Document {
            id: "d".into(),
            path: "d".into(),
            bytes: 0,
            sha256: String::new(),
            pages,
            error,
        };
        let c = Corpus {
            inputs: vec![],
            name: "t".into(),
            documents: vec![
                doc(2, None),
                doc(0, Some(RenderError::Corrupt)),
                doc(3, None),
            ],
            hash: String::new(),
        };
        let p = c.pages(None);
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[2],
            PageRef {
                global: 2,
                doc: 2,
                page: 0
            }
        );
        assert_eq!(c.pages(Some(3)).len(), 3);
    }

    /// A corpus of documents with these page counts (the second one unreadable).
    fn corpus_of(pages: &[u32]) -> Corpus {
        let documents = pages
            .iter()
            .enumerate()
            .map(|(i, &pages)| Document {
                id: format!("d{i}"),
                path: format!("d{i}").into(),
                bytes: 0,
                sha256: String::new(),
                pages,
                error: (i == 1).then_some(RenderError::Corrupt),
            })
            .collect();
        Corpus {
            inputs: vec![],
            name: "t".into(),
            documents,
            hash: String::new(),
        }
    }

    /// (document, page) of each pick.
    fn picks(c: &Corpus, n: usize) -> Vec<(u32, u32)> {
        c.pages_spread(n).iter().map(|p| (p.doc, p.page)).collect()
    }

    #[test]
    fn spread_pages_cover_every_document_before_a_long_one_gets_more() {
        // A 50-page manual first, then short documents: every readable one is in.
        let c = corpus_of(&[50, 9, 1, 2, 1, 10]);
        assert_eq!(
            picks(&c, 6),
            [(0, 0), (0, 25), (2, 0), (3, 0), (4, 0), (5, 0)]
        );
        // Shares: 1-page documents take one; the rest goes round to the longer ones.
        assert_eq!(
            picks(&c, 10),
            [
                (0, 0),
                (0, 16),
                (0, 33),
                (2, 0),
                (3, 0),
                (3, 1),
                (4, 0),
                (5, 0),
                (5, 3),
                (5, 6)
            ]
        );
        // Fewer than the documents: first pages of documents spread over the corpus.
        assert_eq!(picks(&c, 2), [(0, 0), (3, 0)]);
        assert!(picks(&c, 0).is_empty());
        // Global indices stay the corpus-order ones (what spans and reports refer to).
        let g: Vec<u32> = c.pages_spread(6).iter().map(|p| p.global).collect();
        assert_eq!(g, [0, 25, 50, 51, 53, 54]);
    }

    #[test]
    fn spread_takes_every_page_when_the_budget_allows() {
        let c = corpus_of(&[3, 9, 2]);
        assert_eq!(c.pages_spread(5), c.pages(None));
        assert_eq!(c.pages_spread(99), c.pages(None));
        assert_eq!(c.select(PageBudget::First(2)), c.pages(Some(2)));
        assert_eq!(c.select(PageBudget::All), c.pages(None));
        assert_eq!(
            c.select(PageBudget::Spread(2)),
            [c.pages(None)[0], c.pages(None)[3]]
        );
    }
}
