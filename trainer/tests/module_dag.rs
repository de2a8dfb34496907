//! The trainer's modules depend on each other without loops: every `crate::…` and `super::…`
//! path in `src/` (comments aside) is an edge from the file's module to the module file it names,
//! and the graph must have a topological order. A loop fails with the modules on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`fused::flex`) of every `.rs` file under `src/`, except the crate roots.
fn module_files(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name != "lib" && name != "main" {
                out.insert(name, path);
            }
        }
    }
    out
}

/// Paths after `prefix` in `code`, as module segments (`crate::fused::FusedOps` → `fused`,
/// `FusedOps`); `use crate::{a, b}` groups count each member.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(item.trim().split("::").map(str::trim).collect());
            }
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").collect());
    }
    out
}

/// The longest module file that `segments` (from the crate root) names.
fn resolve(segments: &[&str], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

fn edges(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, path) in modules {
        let text = std::fs::read_to_string(path).expect("read module");
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let own: Vec<&str> = name.split("::").collect();
        let is_dir_module = path.ends_with("mod.rs");
        let parent = if is_dir_module {
            own.clone()
        } else {
            own[..own.len() - 1].to_vec()
        };
        let mut deps = BTreeSet::new();
        for segs in paths_after(&code, "crate::") {
            deps.extend(resolve(&segs, modules));
        }
        // `super` is the parent module, except inside the file's inline `mod tests { … }` (at
        // its end, by convention), where it is the file's module itself.
        let tests_at = code.find("mod tests {").unwrap_or(code.len());
        for (part, base) in [(&code[..tests_at], &parent), (&code[tests_at..], &own)] {
            for segs in paths_after(part, "super::") {
                let full: Vec<&str> = base.iter().copied().chain(segs).collect();
                deps.extend(resolve(&full, modules));
            }
        }
        deps.remove(name);
        graph.insert(name.clone(), deps);
    }
    graph
}

/// A cycle of `graph`, if it has one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|m| m == n).expect("on the stack");
                let mut cycle = stack[from..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

#[test]
fn trainer_modules_have_no_import_loops() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = module_files(&src);
    let graph = edges(&modules);
    // the parser sees the known edges (guards against a checker that finds nothing)
    assert!(graph["fused::flex"].contains("fused"), "{graph:?}");
    assert!(graph["train"].contains("train::checkpoint"), "{graph:?}");
    assert!(
        graph["fused::attention"].contains("fused::rows"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}", cycle.join(" → "));
    }
}

#[test]
fn the_checker_finds_a_loop() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let cycle = find_cycle(&graph).expect("a → b → c → a");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
}
