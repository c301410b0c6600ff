//! The layers run one way: no import cycle between the crate's top-level modules, and the
//! layer list in the crate docs (src/lib.rs) matches the real imports.
//!
//! The graph is read from the source text: a module's edges are the `crate::x` paths (and
//! `crate::{x, y::z}` groups) in its files, comments and string literals left out. A
//! token-level reading is enough because the crate never reaches a sibling through `super::`
//! from a top-level file nor through a `use crate as …` alias; the parser test below pins
//! what it understands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → imported top-level module → the files that import it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules: `src/x.rs` and `src/x/` (the crate roots left out).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .expect("src/ is readable")
        .map(|e| e.expect("src/ entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .filter(|m| m != "lib" && m != "main")
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable folder") {
        let p = e.expect("folder entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a Rust file without comments, string and char literals (each replaced by a
/// space), so `crate::x` in a doc comment or a message is not an import.
fn strip(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        let at = |i: usize, k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(i, 0) == '/' && at(i, 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i, 0) == '/' && at(i, 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i, 0) == '/' && at(i, 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i, 0) == '*' && at(i, 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if at(i, 0) == 'r'
            && (at(i, 1) == '"' || (at(i, 1) == '#' && matches!(at(i, 2), '"' | '#')))
            && !(i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') && c[i - 1] != 'b')
        {
            // Raw string r#"…"#: ends at a quote followed by as many hashes.
            i += 1;
            let mut hashes = 0;
            while at(i, 0) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| at(i, k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push(' ');
        } else if at(i, 0) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if at(i, 0) == '\'' && (at(i, 1) == '\\' || at(i, 2) == '\'') {
            // A char literal ('x', '\n', '\u{..}'); a lone quote is a lifetime.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The first path segment of every `crate::` path in `code` (comments and literals
/// stripped), groups included: `crate::{a, b::c, d::{e}}` names a, b and d.
fn crate_roots(code: &str) -> BTreeSet<String> {
    let code = strip(code);
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut roots = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate") {
        let before_ok = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|p| p.is_alphanumeric() || p == '_');
        rest = &rest[at + "crate".len()..];
        let Some(after) = rest.trim_start().strip_prefix("::") else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let after = after.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // Split the group at its own commas (not those of nested groups).
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        roots.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            roots.insert(ident(item.trim()));
        } else {
            roots.insert(ident(after));
        }
    }
    roots.remove("");
    roots
}

fn module_graph() -> Graph {
    let src = src_dir();
    let modules = top_level_modules(&src);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for m in &modules {
        graph.entry(m.clone()).or_default();
    }
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src/");
        let first = rel
            .components()
            .next()
            .expect("a path under src/")
            .as_os_str()
            .to_string_lossy();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if !modules.contains(&module) {
            continue;
        }
        let code = std::fs::read_to_string(&f).expect("readable source");
        for target in crate_roots(&code) {
            if target != module && modules.contains(&target) {
                graph
                    .get_mut(&module)
                    .expect("every module has an entry")
                    .entry(target)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

/// A cycle through the graph's edges, as its modules in order, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    // Depth-first search with three colours; a back edge closes a cycle.
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph[node].keys() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn describe_cycle(graph: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|w| {
            let files: Vec<_> = graph[&w[0]][&w[1]].iter().cloned().collect();
            format!("  {} -> {} (in {})", w[0], w[1], files.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_parser_reads_paths_and_groups_and_skips_comments_and_strings() {
    let code = r##"
        use crate::a::X;
        use crate::{b, c::Y, d::{e, f}};
        // use crate::commented;
        /* crate::block /* nested */ crate::still_block */
        let s = "crate::in_string";
        let r = r#"crate::in_raw " string"#;
        let q = '"'; let l: &'static str = "";
        fn g() { crate::h::call(); my_crate::not_this(); }
    "##;
    let roots: Vec<_> = crate_roots(code).into_iter().collect();
    assert_eq!(roots, ["a", "b", "c", "d", "h"]);
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let graph = module_graph();
    // Guard against a parser that silently reads nothing.
    assert!(
        graph["pipeline"].contains_key("models"),
        "the graph misses pipeline -> models: {graph:#?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules:\n{}\nbreak it: move the shared piece down \
             (e.g. into `vocab`), or pass plain data instead of importing the upper module",
            describe_cycle(&graph, &cycle)
        );
    }
}

/// The layer rows of the crate docs: lines `//! N. [`a`], [`b`]: …`, bottom row first; the
/// module names are the backticked words before the first `: `.
fn documented_layers() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            n.parse::<u32>().ok()?;
            let names = rest.split(": ").next()?;
            Some(
                names
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|s| s.trim_end_matches('/').to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_crate_docs_list_the_layers_as_imported() {
    let graph = module_graph();
    let layers = documented_layers();
    let mut row = BTreeMap::new();
    for (i, names) in layers.iter().enumerate() {
        for n in names {
            assert!(
                graph.contains_key(n),
                "src/lib.rs lists `{n}`, which is no top-level module"
            );
            assert!(
                row.insert(n.clone(), i).is_none(),
                "src/lib.rs lists `{n}` twice"
            );
        }
    }
    for m in graph.keys() {
        assert!(row.contains_key(m), "src/lib.rs's layer list lacks `{m}`");
    }
    for (a, targets) in &graph {
        for (b, files) in targets {
            assert!(
                row[b] < row[a],
                "`{a}` (row {}) imports `{b}` (row {}) in {:?}: src/lib.rs lists layers \
                 bottom-up, so `{b}` belongs in a row above `{a}`'s",
                row[a] + 1,
                row[b] + 1,
                files
            );
        }
    }
}
