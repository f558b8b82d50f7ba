//! The layering of `src/`: the top-level modules (`queue`, `pool`, `http`, ...) depend on each
//! other without a circle, so the code reads straight up from `outline` to `app`. The graph is
//! built from the source text: every `crate::name` path (including `use crate::{a, b}` groups)
//! outside comments is an edge from the module of the file it is in to `name`. `lib.rs` and
//! `main.rs` are the roots and not counted; `super::` paths stay inside their module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from -> to -> one place (file:line) that makes the edge`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every path of a `{...}` group that starts at `s` (just after the `{`).
fn group(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(ident(s[start..i].trim_start()));
                return out;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ident(s[start..i].trim_start()));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// The top-level modules each `crate::` path of `text` names.
fn named(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (n, line) in text.lines().enumerate() {
        let code = if line.trim_start().starts_with("//") {
            ""
        } else {
            line
        };
        for (at, _) in code.match_indices("crate::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let rest = &text[offset + at + "crate::".len()..];
            if let Some(inner) = rest.strip_prefix('{') {
                out.extend(group(inner).into_iter().map(|m| (n + 1, m)));
            } else {
                out.push((n + 1, ident(rest)));
            }
        }
        offset += line.len() + 1;
    }
    out.retain(|(_, m)| !m.is_empty() && *m != "self");
    out
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut g = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src/");
        let first = rel.components().next().expect("a component");
        let first = first.as_os_str().to_string_lossy();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (line, to) in named(&text) {
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to.to_owned())
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    g
}

/// A circle of the graph, if it has one: the modules in order, the first repeated at the end.
fn circle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The parser sees what is certainly there, so an empty graph cannot pass.
    for (from, to) in [("http", "service"), ("watch", "config"), ("queue", "clock")] {
        assert!(
            g.get(from).is_some_and(|e| e.contains_key(to)),
            "the graph lacks {from} -> {to}: {g:#?}"
        );
    }
    if let Some(c) = circle(&g) {
        let edges: Vec<String> = c
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
            .collect();
        panic!(
            "the top-level modules import each other in a circle:\n  {}\nmove the shared type down to the module that owns it",
            edges.join("\n  ")
        );
    }
}

#[test]
fn the_graph_reads_groups_and_skips_comments() {
    let text = "use crate::{queue::{Job, JobId}, self, segment};\n// crate::http\nlet x = crate::view::x;\nmy_crate::pool();\n";
    let found: Vec<&str> = named(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["queue", "segment", "view"]);
    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(f, t)| (f.into(), BTreeMap::from([(t.into(), String::new())])))
        .collect();
    assert_eq!(
        circle(&g).expect("a circle"),
        ["a", "b", "c", "a"].map(String::from)
    );
}
