//! The architecture as a test: the harness's modules import only from their own layer's
//! module or from lower layers, no two files use each other (directly or around a
//! circle), and no source file grows past what one can hold in one's head.
//!
//! The sources are read as text: comments and string literals are blanked, `use` trees
//! and `crate::`/`super::` paths are resolved to the file that defines the item, through
//! `pub use` re-exports. Test-only code (`#[cfg(test)]` modules and files) is left out:
//! a test may reach across files. ARCHITECTURE.md explains the layers.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use source::{Crate, ModPath};

/// The harness's top-level modules, lowest layer first. A module may import from its own
/// files and from modules of lower layers; modules of one layer do not import each other,
/// except in the foundation (layer 0), whose small modules may use one another.
const LAYERS: &[&[&str]] = &[
    &[
        "protocol",
        "transport",
        "shard",
        "socket",
        "failure",
        "latency",
        "descriptors",
        "sources",
        "child_process",
        "stderr",
        "printable",
    ],
    &["scenario"],
    &["expect"],
    &["plan", "rendezvous"],
    &["report", "netns"],
    &["engine", "embedded"],
    &["preflight", "metrics", "search"],
    &["cli"],
    &["main"],
];

/// The most lines a source file may have, its tests included.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn top(path: &ModPath) -> &str {
    path.first().map(String::as_str).unwrap_or("lib")
}

#[test]
fn modules_import_only_from_lower_layers() {
    let krate = Crate::read(&root().join("harness"));
    let mut wrong = Vec::new();
    for (from, to) in krate.edges() {
        let (a, b) = (top(&krate.files[&from].module), top(&krate.files[&to].module));
        if a == b || a == "lib" {
            continue;
        }
        match (layer_of(a), layer_of(b)) {
            (Some(la), Some(lb)) if lb < la || (la == 0 && lb == 0) => {}
            (Some(_), Some(_)) => wrong.push(format!("{} uses {}", rel(&from), rel(&to))),
            _ => wrong.push(format!("{a} or {b} is in no layer: add it to LAYERS (tests/architecture/main.rs)")),
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n  {}", wrong.join("\n  "));
}

#[test]
fn no_two_files_use_each_other() {
    let krate = Crate::read(&root().join("harness"));
    let circles = circles(&krate.edges());
    let shown: Vec<String> =
        circles.iter().map(|c| c.iter().map(|f| rel(f)).collect::<Vec<_>>().join(" -> ")).collect();
    assert!(shown.is_empty(), "files that use each other:\n  {}", shown.join("\n  "));
}

#[test]
fn no_source_file_is_too_long_to_read() {
    let mut long = Vec::new();
    for dir in ["harness", "probe", "tests"] {
        for file in source::rust_files(&root().join(dir)) {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} has {lines} lines", rel(&file)));
            }
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines: split them along their lines\n  {}", long.join("\n  "));
}

/// The resolver itself, on a small crate: a re-export is followed to the defining file,
/// a module imported by `self` is an alias (no edge by itself), test code is left out,
/// and a circle between two files is found.
#[test]
fn the_checker_sees_what_it_should() {
    let dir = std::env::temp_dir().join(format!("sockcap-arch-{}", std::process::id()));
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n#[cfg(test)]\nmod t;\n");
    write("a/mod.rs", "//! a\nmod inner;\npub use inner::Thing;\n");
    write("a/inner.rs", "pub struct Thing;\n// crate::b::Other in a comment\nconst S: &str = \"crate::b::Other\";\n");
    write("b.rs", "use crate::a::{self, Thing};\npub struct Other;\nfn f() { a::Thing; }\n#[cfg(test)]\nmod tests { use crate::t::X; }\n");
    write("t.rs", "use crate::b::Other;\n");
    let krate = Crate::read(&dir);
    let edges: BTreeSet<(String, String)> =
        krate.edges().into_iter().map(|(f, t)| (name(&dir, &f), name(&dir, &t))).collect();
    assert_eq!(edges, BTreeSet::from([("b.rs".to_string(), "a/inner.rs".to_string())]));
    assert!(circles(&krate.edges()).is_empty());
    write("a/inner.rs", "pub struct Thing;\nfn g() { crate::b::Other; }\n");
    let krate = Crate::read(&dir);
    assert_eq!(circles(&krate.edges()).len(), 1, "{:?}", krate.edges());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn name(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap().display().to_string()
}

fn rel(file: &Path) -> String {
    file.strip_prefix(root()).unwrap_or(file).display().to_string()
}

/// The strongly connected groups of more than one file (Tarjan's algorithm).
fn circles(edges: &BTreeSet<(PathBuf, PathBuf)>) -> Vec<Vec<PathBuf>> {
    let mut next: BTreeMap<&PathBuf, Vec<&PathBuf>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    struct Walk<'a> {
        next: &'a BTreeMap<&'a PathBuf, Vec<&'a PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        found: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a PathBuf) {
        let i = w.index.len();
        w.index.insert(v, i);
        w.low.insert(v, i);
        w.stack.push(v);
        for &u in &w.next[v] {
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.low[v].min(w.low[u]);
                w.low.insert(v, low);
            } else if w.stack.contains(&u) {
                let low = w.low[v].min(w.index[u]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let at = w.stack.iter().position(|x| *x == v).unwrap();
            let group: Vec<PathBuf> = w.stack.drain(at..).cloned().collect();
            if group.len() > 1 {
                w.found.push(group);
            }
        }
    }
    let mut walk =
        Walk { next: &next, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in next.keys() {
        if !walk.index.contains_key(v) {
            visit(&mut walk, v);
        }
    }
    walk.found
}
