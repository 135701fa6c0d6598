//! The import graph between source files: no two files of a crate may import
//! each other, directly or round a longer loop (a parent module declaring its
//! children is not an import). Run by `cargo xtask test` before the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, Result};

/// Every import cycle between files of the crates under `crates/`, each as
/// the files on it, `crate/src/a.rs → crate/src/b.rs → …`.
pub(crate) fn cycles(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let crates = root.join("crates");
    let mut entries: Vec<_> = std::fs::read_dir(&crates)
        .with_context(|| format!("listing {}", crates.display()))?
        .filter_map(std::result::Result::ok)
        .map(|entry| entry.path().join("src"))
        .filter(|source| source.is_dir())
        .collect();
    entries.sort();
    for source in entries {
        let modules = modules_of(&source)?;
        let graph = imports(&modules);
        for cycle in cycles_in(&graph) {
            let files: Vec<String> = cycle
                .iter()
                .map(|module| {
                    format!(
                        "{}/{}.rs",
                        source.strip_prefix(root).unwrap_or(&source).display(),
                        module.replace("::", "/")
                    )
                })
                .collect();
            found.push(files.join(" → "));
        }
    }
    Ok(found)
}

/// Module path (`validate::read`) → its source outside `#[cfg(test)]`.
fn modules_of(source: &Path) -> Result<BTreeMap<String, String>> {
    let mut modules = BTreeMap::new();
    let mut pending = vec![source.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory)
            .with_context(|| format!("listing {}", directory.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path
                .strip_prefix(source)
                .unwrap_or(&path)
                .with_extension("")
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "::");
            if relative == "lib" || relative == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            modules.insert(relative, code.to_owned());
        }
    }
    Ok(modules)
}

/// Which modules each module imports (`crate::…`, `super::…`, `self::…`),
/// parents and children left out.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (module, code) in modules {
        let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
        let mut targets = Vec::new();
        for (prefix, base) in [
            ("crate::", String::new()),
            ("super::", parent.to_owned()),
            ("self::", module.clone()),
        ] {
            let mut rest = code.as_str();
            while let Some(found) = rest.find(prefix) {
                let before = rest[..found].chars().next_back();
                rest = &rest[found + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: String = rest
                    .chars()
                    .take_while(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                    })
                    .collect();
                let path = path.trim_end_matches(':');
                let full = if base.is_empty() {
                    path.to_owned()
                } else {
                    format!("{base}::{path}")
                };
                targets.push(full);
            }
        }
        let edges = graph.entry(module.as_str()).or_default();
        for target in targets {
            let parts: Vec<&str> = target.split("::").collect();
            let known = (1..=parts.len())
                .rev()
                .map(|length| parts[..length].join("::"))
                .find_map(|candidate| modules.get_key_value(&candidate).map(|(key, _)| key));
            if let Some(known) = known
                && known != module
                && !module.starts_with(&format!("{known}::"))
                && !known.starts_with(&format!("{module}::"))
            {
                edges.insert(known.as_str());
            }
        }
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles_in<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: usize,
        indices: BTreeMap<&'a str, usize>,
        lowest: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut State<'a>,
    ) {
        state.indices.insert(node, state.index);
        state.lowest.insert(node, state.index);
        state.index += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for &next in graph.get(node).into_iter().flatten() {
            if !state.indices.contains_key(next) {
                visit(next, graph, state);
                let low = state.lowest[node].min(state.lowest[next]);
                state.lowest.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.lowest[node].min(state.indices[next]);
                state.lowest.insert(node, low);
            }
        }
        if state.lowest[node] == state.indices[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member);
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        index: 0,
        indices: BTreeMap::new(),
        lowest: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in graph.keys() {
        if !state.indices.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.components
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workspace_has_no_import_cycles() {
        let cycles = super::cycles(&crate::repository_root()).expect("reads the crates");
        assert!(cycles.is_empty(), "{}", cycles.join("\n"));
    }

    #[test]
    fn a_loop_of_imports_is_found_and_a_parent_is_not_one() {
        let root = std::env::temp_dir().join(format!("gantry-layering-{}", std::process::id()));
        let source = root.join("crates/demo/src");
        std::fs::create_dir_all(source.join("engine")).expect("mkdir");
        let files = [
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod engine;\n"),
            ("a.rs", "use crate::b::thing;\n"),
            ("b.rs", "use crate::c::{other};\n"),
            (
                "c.rs",
                "use crate::a::x;\n#[cfg(test)]\nmod tests { use crate::engine::y; }\n",
            ),
            ("engine.rs", "mod read;\nuse self::read::z;\n"),
            ("engine/read.rs", "use super::Options;\nuse crate::c::w;\n"),
        ];
        for (name, text) in files {
            std::fs::write(source.join(name), text).expect("write");
        }
        let cycles = super::cycles(&root).expect("cycles");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            cycles,
            ["crates/demo/src/a.rs → crates/demo/src/b.rs → crates/demo/src/c.rs"]
        );
    }
}
