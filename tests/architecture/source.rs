//! Reading a crate's sources as text, just far enough to know which file uses which:
//! tokens without comments and literals, `mod` declarations (test-only ones marked),
//! `use` trees, `pub use` re-exports and `crate::`/`super::` paths in code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from the crate root: `["engine", "worker"]`.
pub type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// What one file declares and refers to.
#[derive(Debug, Default)]
pub struct File {
    pub module: ModPath,
    /// Child modules declared here, and whether each is test-only.
    children: BTreeMap<String, bool>,
    /// `use` leaves: the name they bring in, and the path as written.
    uses: Vec<(String, Vec<String>)>,
    /// `pub use` leaves: the name re-exported, and the path as written.
    reexports: BTreeMap<String, Vec<String>>,
    /// Paths in code whose first segment may name a module.
    paths: Vec<Vec<String>>,
}

/// Every non-test file of a crate, by path.
#[derive(Debug)]
pub struct Crate {
    pub files: BTreeMap<PathBuf, File>,
    modules: BTreeMap<ModPath, PathBuf>,
}

pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

impl Crate {
    /// Read the crate rooted at `dir/lib.rs` (and `dir/main.rs`, a module named `main`).
    pub fn read(dir: &Path) -> Crate {
        let mut files = BTreeMap::new();
        let mut modules = BTreeMap::new();
        let mut queue = vec![(dir.join("lib.rs"), ModPath::new())];
        if dir.join("main.rs").exists() {
            queue.push((dir.join("main.rs"), vec!["main".to_string()]));
        }
        while let Some((path, module)) = queue.pop() {
            let file = parse(&std::fs::read_to_string(&path).unwrap(), module.clone());
            let base = if module.is_empty() || path.ends_with("mod.rs") || module == ["main"] {
                path.parent().unwrap().to_path_buf()
            } else {
                path.with_extension("")
            };
            for (child, test_only) in &file.children {
                let own = base.join(format!("{child}.rs"));
                let child_path = if own.exists() { own } else { base.join(child).join("mod.rs") };
                let mut child_module = if module == ["main"] { ModPath::new() } else { module.clone() };
                child_module.push(child.clone());
                if !test_only && child_path.exists() {
                    queue.push((child_path, child_module));
                }
            }
            if module != ["main"] {
                modules.insert(module, path.clone());
            }
            files.insert(path, file);
        }
        Crate { files, modules }
    }

    /// `(from, to)`: file `from` uses an item that file `to` defines.
    pub fn edges(&self) -> BTreeSet<(PathBuf, PathBuf)> {
        let mut edges = BTreeSet::new();
        for (path, file) in &self.files {
            let mut aliases: BTreeMap<&str, ModPath> = BTreeMap::new();
            let mut targets = Vec::new();
            for (name, written) in &file.uses {
                let Some(absolute) = absolute(file, written) else { continue };
                match self.resolve(&absolute, 0) {
                    Some(Target::Module(m)) => {
                        aliases.insert(name, m);
                    }
                    Some(Target::Item(f)) => targets.push(f),
                    None => {}
                }
            }
            for written in &file.paths {
                let absolute = match aliases.get(written[0].as_str()) {
                    Some(m) => m.iter().chain(&written[1..]).cloned().collect(),
                    None => match absolute(file, written) {
                        Some(a) => a,
                        None => continue,
                    },
                };
                if let Some(Target::Item(f)) = self.resolve(&absolute, 0) {
                    targets.push(f);
                }
            }
            for to in targets {
                if &to != path {
                    edges.insert((path.clone(), to));
                }
            }
        }
        edges
    }

    /// The file that defines what `absolute` names, following re-exports.
    fn resolve(&self, absolute: &[String], depth: usize) -> Option<Target> {
        let k = (0..=absolute.len()).rev().find(|k| self.modules.contains_key(&absolute[..*k]))?;
        let (module, rest) = absolute.split_at(k);
        if rest.is_empty() {
            return Some(Target::Module(module.to_vec()));
        }
        let file_path = &self.modules[module];
        let file = &self.files[file_path];
        if let Some(written) = file.reexports.get(&rest[0]) {
            if depth < 8 {
                let mut target = absolute_from(file, written)?;
                target.extend(rest[1..].iter().cloned());
                return self.resolve(&target, depth + 1);
            }
        }
        Some(Target::Item(file_path.clone()))
    }
}

enum Target {
    Module(ModPath),
    Item(PathBuf),
}

/// A path written in `file` made absolute, when it starts inside this crate.
fn absolute(file: &File, written: &[String]) -> Option<ModPath> {
    absolute_from(file, written)
}

fn absolute_from(file: &File, written: &[String]) -> Option<ModPath> {
    let here = if file.module == ["main"] { ModPath::new() } else { file.module.clone() };
    let mut out;
    let mut rest = written;
    match written.first()?.as_str() {
        "crate" | "sockcap" => {
            out = ModPath::new();
            rest = &written[1..];
        }
        "self" => {
            out = here;
            rest = &written[1..];
        }
        "super" => {
            out = here;
            while rest.first().is_some_and(|s| s == "super") {
                out.pop()?;
                rest = &rest[1..];
            }
        }
        first if file.children.contains_key(first) => out = here,
        _ => return None,
    }
    out.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(out)
}

/// Tokens of Rust source, without comments, string and char literals.
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#') && chars.get(i + 2) == Some(&'"')) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            i += 2 + hashes;
            while i < chars.len()
                && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes)
            {
                i += 1;
            }
            i += 1 + hashes;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            out.push(Token::Sep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Ident(s)) => Some(s),
        _ => None,
    }
}

/// The declarations and references of one file's text.
pub fn parse(text: &str, module: ModPath) -> File {
    let toks = tokens(text);
    let mut file = File { module, ..File::default() };
    let mut i = 0;
    let mut test_attr = false;
    while i < toks.len() {
        // `#[cfg(test)]` before the next item.
        if toks[i] == Token::Punct('#')
            && ident(toks.get(i + 2)) == Some("cfg")
            && ident(toks.get(i + 4)) == Some("test")
        {
            test_attr = true;
            i += 7;
            continue;
        }
        let mut j = i;
        let public = ident(toks.get(j)) == Some("pub");
        if public {
            j += 1;
            if toks.get(j) == Some(&Token::Punct('(')) {
                j += 3;
            }
        }
        match ident(toks.get(j)) {
            Some("mod") => {
                let name = ident(toks.get(j + 1)).unwrap_or_default().to_string();
                if toks.get(j + 2) == Some(&Token::Punct('{')) && test_attr {
                    i = skip_block(&toks, j + 2);
                } else {
                    if toks.get(j + 2) == Some(&Token::Punct(';')) {
                        file.children.insert(name, test_attr);
                    }
                    i = j + 2;
                }
                test_attr = false;
                continue;
            }
            Some("use") => {
                let end = (j..toks.len()).find(|k| toks[*k] == Token::Punct(';')).unwrap_or(toks.len());
                let mut leaves = Vec::new();
                use_tree(&toks[j + 1..end], &[], &mut leaves);
                for (name, path) in leaves {
                    // A re-export alone is no use of the item: a path through it resolves
                    // to the defining file. Used in this file's own code too, it is one.
                    let used_here = toks.iter().filter(|t| ident(Some(t)) == Some(name.as_str())).count() > 1;
                    if public {
                        file.reexports.insert(name.clone(), path.clone());
                    }
                    if !public || used_here {
                        file.uses.push((name, path));
                    }
                }
                i = end + 1;
                test_attr = false;
                continue;
            }
            Some(first) if toks.get(j + 1) == Some(&Token::Sep) && !(i > 0 && toks[i - 1] == Token::Sep) => {
                let mut path = vec![first.to_string()];
                let mut k = j + 1;
                while toks.get(k) == Some(&Token::Sep) {
                    match ident(toks.get(k + 1)) {
                        Some(s) => path.push(s.to_string()),
                        None => break,
                    }
                    k += 2;
                }
                file.paths.push(path);
                i = k;
                continue;
            }
            _ => {}
        }
        if matches!(toks[i], Token::Punct('{') | Token::Punct(';') | Token::Punct('}')) {
            test_attr = false;
        }
        i += 1;
    }
    file
}

/// The index just past the block opened at `open`.
fn skip_block(toks: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// The leaves of a `use` tree (`a::{b, c::d as e, self}`): (name in scope, path).
/// Globs bring in no name and are left out.
fn use_tree(toks: &[Token], prefix: &[String], out: &mut Vec<(String, Vec<String>)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Ident(s) if s == "as" => {
                if let Some(alias) = ident(toks.get(i + 1)) {
                    out.push((alias.to_string(), path.clone()));
                }
                return;
            }
            Token::Ident(s) => path.push(s.clone()),
            Token::Sep => {}
            Token::Punct('{') => {
                let close = matching(toks, i);
                for part in split_top(&toks[i + 1..close]) {
                    use_tree(part, &path, out);
                }
                return;
            }
            Token::Punct('*') => return,
            Token::Punct(_) => {}
        }
        i += 1;
    }
    if let Some(last) = path.last() {
        let name = if last == "self" { path.iter().rev().nth(1).cloned().unwrap_or_default() } else { last.clone() };
        out.push((name, path));
    }
}

fn matching(toks: &[Token], open: usize) -> usize {
    skip_block(toks, open) - 1
}

/// `a, b::{c, d}, e` → its top-level parts.
fn split_top(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, t) in toks.iter().enumerate() {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}
