//! Reading the source tree for the boundary rules: every path named in the library's files,
//! resolved, with its line (see the rules' module for what is read and how).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// Methods of rusqlite's `Connection`, `Transaction` and `Statement` that run SQL.
pub(super) const SQL_METHODS: [&str; 9] = [
    "execute",
    "execute_batch",
    "prepare",
    "prepare_cached",
    "query_row",
    "query_map",
    "query_and_then",
    "pragma_update",
    "pragma_query_value",
];

/// A place in the source where a path (or a method call) occurs.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// Repository-relative file, `/`-separated.
    pub(super) file: String,
    pub(super) line: usize,
    /// Resolved: `["crate", "http", ...]` inside this crate, `["rusqlite", ...]` for an
    /// external crate; for a method call, `[".", name]`.
    pub(super) path: Vec<String>,
    /// How it was written, for the failure message.
    written: String,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.written)
    }
}

pub(super) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every library source file (and `main.rs`), with its module path.
pub(super) fn sources() -> Vec<(String, Vec<String>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(root()).expect("under the root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.starts_with("src/bin/") {
                return None;
            }
            let inner = rel.strip_prefix("src/")?.strip_suffix(".rs")?;
            let mut module: Vec<String> = inner.split('/').map(str::to_owned).collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            Some((rel, module))
        })
        .collect()
}

/// Everything named in every source file (read once for all the rules).
pub(super) fn everything() -> Vec<Found> {
    static FOUND: std::sync::OnceLock<Vec<Found>> = std::sync::OnceLock::new();
    FOUND.get_or_init(read_everything).clone()
}

pub(super) fn read_everything() -> Vec<Found> {
    let mut found = Vec::new();
    for (file, module) in sources() {
        let text = std::fs::read_to_string(root().join(&file)).expect("read source");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut scan = Scan {
            file: file.clone(),
            main: file == "src/main.rs",
            scopes: vec![Scope {
                module,
                children: child_modules(&ast.items),
            }],
            in_test: 0,
            found: Vec::new(),
        };
        scan.visit_file(&ast);
        found.extend(scan.found);
    }
    found
}

/// The module a piece of code is in, and the modules declared directly in it.
pub(super) struct Scope {
    pub(super) module: Vec<String>,
    pub(super) children: HashSet<String>,
}

pub(super) fn child_modules(items: &[syn::Item]) -> HashSet<String> {
    items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) struct Scan {
    pub(super) file: String,
    /// `src/main.rs`: its own crate, where `kaffediem::` is the library.
    pub(super) main: bool,
    pub(super) scopes: Vec<Scope>,
    /// Depth of `#[cfg(test)]` items around the code being visited.
    pub(super) in_test: usize,
    pub(super) found: Vec<Found>,
}

impl Scan {
    fn scope(&self) -> &Scope {
        self.scopes.last().expect("a scope")
    }

    /// Record `segments` (as written; `leading` for a `::` in front) found at `line`.
    fn record(&mut self, leading: bool, segments: Vec<String>, line: usize) {
        if self.in_test > 0 || segments.is_empty() {
            return;
        }
        let written = format!("{}{}", if leading { "::" } else { "" }, segments.join("::"));
        if let Some(path) = self.resolve(leading, segments) {
            self.found.push(Found {
                file: self.file.clone(),
                line,
                path,
                written,
            });
        }
    }

    fn resolve(&self, leading: bool, segments: Vec<String>) -> Option<Vec<String>> {
        let scope = self.scope();
        let first = segments[0].as_str();
        if leading {
            return Some(segments);
        }
        let mut module = scope.module.clone();
        let rest: Vec<String> = match first {
            "crate" => {
                module.clear();
                segments[1..].to_vec()
            }
            "kaffediem" if self.main => {
                module.clear();
                segments[1..].to_vec()
            }
            "self" => segments[1..].to_vec(),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    module.pop()?;
                }
                segments[supers..].to_vec()
            }
            _ if scope.children.contains(first) => segments,
            // An external crate, the prelude, or a name imported here (whose `use` is checked).
            _ => return Some(segments),
        };
        let mut path = vec!["crate".to_owned()];
        path.extend(module);
        path.extend(rest);
        Some(path)
    }

    /// Paths written inside a macro invocation's tokens: `a::b::c`, `::a::b`, `crate::x`.
    fn macro_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => {
                    self.macro_tokens(group.stream());
                    i += 1;
                }
                TokenTree::Ident(ident) => {
                    let leading = i >= 2 && is_path_sep(&trees[i - 2], &trees[i - 1]);
                    let line = ident.span().start().line;
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while j + 2 < trees.len() && is_path_sep(&trees[j], &trees[j + 1]) {
                        match &trees[j + 2] {
                            TokenTree::Ident(next) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    // A method call in a macro: `.query_row(`.
                    let method_call = i >= 1
                        && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '.')
                        && matches!(trees.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Parenthesis);
                    if method_call {
                        self.method(&ident.to_string(), line);
                    }
                    if segments.len() > 1 {
                        self.record(leading, segments, line);
                    }
                    i = j.max(i + 1);
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
            }
        }
    }

    fn method(&mut self, name: &str, line: usize) {
        if self.in_test == 0 && SQL_METHODS.contains(&name) {
            self.found.push(Found {
                file: self.file.clone(),
                line,
                path: vec![".".into(), name.into()],
                written: format!(".{name}(..)"),
            });
        }
    }
}

pub(super) fn is_path_sep(a: &TokenTree, b: &TokenTree) -> bool {
    matches!((a, b), (TokenTree::Punct(x), TokenTree::Punct(y))
        if x.as_char() == ':' && x.spacing() == Spacing::Joint && y.as_char() == ':')
}

/// Whether `attrs` hold `#[cfg(test)]` (or `#[cfg(all(test, ...))]`) or `#[test]`.
pub(super) fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if attr.path().is_ident("test") {
            return true;
        }
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let Ok(list) = attr.meta.require_list() else {
            return false;
        };
        let tokens = list.tokens.to_string().replace(' ', "");
        tokens == "test" || tokens.starts_with("all(test,")
    })
}

pub(super) fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The paths a `use` tree brings in, each with the line of its first segment.
pub(super) fn use_paths(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let line = |ident: &syn::Ident| ident.span().start().line;
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            if n.ident != "self" {
                path.push(n.ident.to_string());
            }
            out.push((path, line(&n.ident)));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, line(&r.ident)));
        }
        syn::UseTree::Glob(g) => {
            let mut path = prefix.clone();
            path.push("*".into());
            out.push((path, g.star_token.span.start().line));
        }
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                use_paths(tree, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let test = is_test(item_attrs(item));
        self.in_test += usize::from(test);
        visit::visit_item(self, item);
        self.in_test -= usize::from(test);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let Some((_, items)) = &m.content else {
            return;
        };
        let mut module = self.scope().module.clone();
        module.push(m.ident.to_string());
        self.scopes.push(Scope {
            module,
            children: child_modules(items),
        });
        for item in items {
            self.visit_item(item);
        }
        self.scopes.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut paths);
        for (path, line) in paths {
            self.record(u.leading_colon.is_some(), path, line);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 || path.leading_colon.is_some() {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = path.segments[0].ident.span().start().line;
            self.record(path.leading_colon.is_some(), segments, line);
        }
        visit::visit_path(self, path);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.method(&call.method.to_string(), call.method.span().start().line);
        visit::visit_expr_method_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.macro_tokens(mac.tokens.clone());
    }
}
