//! Writing reports and page outputs: default paths, atomic writes (temp file + rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::schema::Report;
use crate::pipeline::PageRecord;

/// `results/<corpus>-<strategy>-<UTC time>.json`.
pub fn default_path(results_dir: &Path, corpus: &str, strategy: &str, created_at: &str) -> PathBuf {
    let stamp: String = created_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    results_dir.join(format!("{corpus}-{strategy}-{stamp}.json"))
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0} exists; pass --force to overwrite it, or choose another --out")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `report` (and its spans side file, if asked) atomically: temp file + rename.
/// Refuses to replace an existing file unless `force`.
pub fn write(report: &mut Report, path: &Path, force: bool) -> Result<(), WriteError> {
    if path.exists() && !force {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError::Io { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if report.spans.mode == super::SpansMode::File {
        let side = path.with_extension("spans.jsonl");
        let mut buf = Vec::new();
        for s in &report.spans.spans {
            serde_json::to_writer(&mut buf, s).expect("spans serialize");
            buf.push(b'\n');
        }
        atomic_write(&side, &buf).map_err(io(&side))?;
        report.spans.file = side.file_name().map(|n| n.to_string_lossy().into_owned());
        report.spans.spans.clear();
    } else if report.spans.mode == super::SpansMode::None {
        report.spans.spans.clear();
    }
    let mut json = serde_json::to_vec_pretty(report).expect("reports serialize");
    json.push(b'\n');
    atomic_write(path, &json).map_err(io(path))
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes each document's outputs as `<dir>/<document id>.json` (pages with their regions) and
/// `.md` (the text of its regions in order, one page per section). Ids with `/` become folders.
pub fn save_outputs(dir: &Path, records: &[PageRecord]) -> std::io::Result<usize> {
    let mut by_doc: BTreeMap<&str, Vec<&PageRecord>> = BTreeMap::new();
    for r in records {
        by_doc.entry(&r.doc_id).or_default().push(r);
    }
    for (doc, mut pages) in by_doc.iter_mut().map(|(d, p)| (*d, std::mem::take(p))) {
        pages.sort_by_key(|r| r.page.page);
        let json = serde_json::json!({
            "document": doc,
            "pages": pages.iter().map(|r| serde_json::json!({
                "page": r.page.page + 1,
                "ok": r.ok,
                "output": r.output,
            })).collect::<Vec<_>>(),
        });
        let base = dir.join(doc);
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut md = format!("# {doc}\n");
        for r in &pages {
            md.push_str(&format!("\n## Page {}\n\n", r.page.page + 1));
            for region in &r.output.regions {
                md.push_str(&region_markdown(region));
            }
        }
        atomic_write(
            &base.with_extension("json"),
            &serde_json::to_vec_pretty(&json).expect("outputs serialize"),
        )?;
        atomic_write(&base.with_extension("md"), md.as_bytes())?;
    }
    Ok(by_doc.len())
}

/// One region as Markdown: tables as their HTML (without the page wrapper), titles as
/// headings, figures and equations as a placeholder with their box, text as a paragraph.
fn region_markdown(r: &crate::page::Region) -> String {
    let text = r.text.as_deref().unwrap_or("").trim();
    let b = r.bbox;
    match (r.class.as_str(), &r.html) {
        (_, Some(html)) => {
            let inner = html
                .trim_start_matches("<html><body>")
                .trim_end_matches("</body></html>");
            format!("{inner}\n\n")
        }
        ("title", _) if !text.is_empty() => format!("### {}\n\n", text.replace('\n', " ")),
        ("figure", _) if r.data.is_some() => format!(
            "*[figure at {:.0},{:.0}–{:.0},{:.0}: its data]*\n\n{}\n",
            b[0],
            b[1],
            b[2],
            b[3],
            r.data.as_ref().map(|d| d.markdown()).unwrap_or_default()
        ),
        ("figure" | "equation", _) => format!(
            "*[{} at {:.0},{:.0}–{:.0},{:.0}]*\n\n",
            r.class, b[0], b[1], b[2], b[3]
        ),
        _ if !text.is_empty() => format!("{text}\n\n"),
        _ => String::new(),
    }
}
