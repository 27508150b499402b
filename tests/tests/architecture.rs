//! The runtime's structure, as `docs/architecture.md` lists it: every module of
//! `runtime/src` is in one layer, imports only from its own layer or those below, and no
//! modules import each other round a circle. Read from the sources' `crate::` paths (outside
//! comments and the test modules at the end of files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The layers, bottom first: each a list of modules.
fn layers() -> Vec<(String, Vec<String>)> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let start = doc.find("<!-- layers:start -->").expect("the layer list in docs/architecture.md");
    let end = doc.find("<!-- layers:end -->").unwrap();
    doc[start..end]
        .lines()
        .filter_map(|line| line.strip_prefix("- "))
        .map(|line| {
            let (name, modules) = line.split_once(':').unwrap();
            (name.to_owned(), modules.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

/// Each module of the runtime (a file of `src`, or a folder: `store`) and its code, without
/// comments and without its test module.
fn modules() -> BTreeMap<String, String> {
    let src = root().join("runtime/src");
    let mut modules = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let module = relative.iter().next().unwrap().to_str().unwrap().trim_end_matches(".rs");
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        modules.entry(module.to_owned()).or_insert_with(String::new).push_str(&code);
    }
    modules
}

/// What the crate root re-exports (`pub use`), by name: `crate::QueryCache` is `cache`'s.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.trim().strip_prefix("pub use ")) {
        let path = line.trim_end_matches(';').trim_start_matches("crate::");
        let Some((module, items)) = path.split_once("::") else { continue };
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = item.split(" as ").last().unwrap().trim();
            names.insert(name.to_owned(), module.to_owned());
        }
    }
    names
}

/// The modules `code` takes something from: every `crate::x` path, and the items of
/// `use crate::{a, b::c}`.
fn imports(code: &str, modules: &BTreeSet<String>, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let resolve = |name: &str| {
        if modules.contains(name) {
            Some(name.to_owned())
        } else if name == "__private" {
            Some("private".to_owned())
        } else {
            reexports.get(name).filter(|module| modules.contains(*module)).cloned()
        }
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap()];
            group.split(',').map(|item| item.trim().split("::").next().unwrap()).collect()
        } else {
            vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap()]
        };
        found.extend(names.into_iter().filter(|n| !n.is_empty()).filter_map(resolve));
    }
    found
}

#[test]
fn the_runtime_imports_only_downward_and_in_no_circle() {
    let (layers, modules) = (layers(), modules());
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut layer_of = BTreeMap::new();
    for (level, (_, members)) in layers.iter().enumerate() {
        for module in members {
            assert!(layer_of.insert(module.clone(), level).is_none(), "`{module}` is listed twice");
        }
    }
    let listed: BTreeSet<String> = layer_of.keys().cloned().collect();
    assert_eq!(names, listed, "docs/architecture.md must list every module of runtime/src, once");

    let reexports = reexports(&modules["lib"]);
    let mut graph = BTreeMap::new();
    let mut upward = Vec::new();
    for (module, code) in &modules {
        let mut uses = imports(code, &names, &reexports);
        uses.remove(module);
        for used in &uses {
            if layer_of[used] > layer_of[module] {
                upward.push(format!(
                    "{module} ({}) imports {used} ({})",
                    layers[layer_of[module]].0, layers[layer_of[used]].0
                ));
            }
        }
        graph.insert(module.clone(), uses);
    }
    assert!(upward.is_empty(), "imports that run upward:\n{}", upward.join("\n"));
    if let Some(circle) = find_circle(&graph) {
        panic!("an import circle: {}", circle.join(" -> "));
    }
}

/// A circle in `graph`, if there is one (depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The checker itself: an upward import and a circle are found.
#[test]
fn the_checker_finds_upward_imports_and_circles() {
    let names: BTreeSet<String> = ["cache", "lookup", "key"].map(str::to_owned).into();
    let reexports = BTreeMap::from([("QueryCache".to_owned(), "cache".to_owned())]);
    let code = "use crate::{QueryCache, key::head};\nfn f() { crate::lookup::find(); }\n";
    assert_eq!(imports(code, &names, &reexports), ["cache", "key", "lookup"].map(str::to_owned).into());
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(find_circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::new()),
    ]);
    assert!(find_circle(&graph).is_none());
}
