//! Repository hygiene checks that run with `cargo test`: every Rust file starts with a `//!`
//! line saying what it is for, and the example config stays in the repository.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(name.as_ref(), "target" | ".git" | ".venv" | "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 10,
        "found only {} rust files under {}",
        files.len(),
        root.display()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:?}");
}

/// The module layering of the broker crate (ARCHITECTURE.md "What may import what"): for each
/// module, the crate modules it must never import. `use crate::...` paths in code (not comments)
/// count. `DEBT` lists today's known exceptions, each to be removed by the cluster-mode layout
/// work; a new forbidden edge fails, and so does a listed one that is gone (shrink the list).
const RULES: &[(&str, &[&str])] = &[
    // Leaves: import nothing from the crate.
    ("publish", &["*"]),
    ("clock", &["*"]),
    ("buffers", &["*"]),
    // The network layer knows the handlers' dispatch and nothing below it.
    (
        "network",
        &[
            "controller",
            "group",
            "txn",
            "replication",
            "tiering",
            "admin",
            "http",
            "topic_config",
            "producer_ids",
            "resources",
        ],
    ),
    // Handlers are called by the network, never the other way round; they do not see the other
    // front ends.
    ("handlers", &["network", "admin", "http", "resources"]),
    // The coordinator and the partition layer never reach up into request handling.
    ("group", &["handlers", "network", "admin", "http"]),
    ("txn", &["handlers", "network", "admin", "http"]),
    (
        "replication",
        &[
            "handlers",
            "network",
            "admin",
            "http",
            "group",
            "txn",
            "controller",
            "producer_ids",
            "resources",
            "broker",
        ],
    ),
    (
        "tiering",
        &["handlers", "network", "admin", "http", "group", "controller"],
    ),
    ("controller", &["handlers", "network", "admin", "http"]),
    ("admin", &["handlers", "network", "http"]),
    // Connection security (sessions, TLS, SASL, ACL decisions) is below request handling.
    ("security", &["handlers", "network", "admin", "http"]),
    ("http", &["handlers", "network", "admin"]),
    (
        "metrics",
        &["handlers", "network", "admin", "http", "controller", "broker"],
    ),
];

/// Known forbidden edges (module, imported module) kept until the layout work removes them.
const DEBT: &[(&str, &str)] = &[("replication", "broker")];

fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn module_imports_follow_the_layering_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(rel) else { continue };
        let text = std::fs::read_to_string(file).expect("readable");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    edges.insert((module.clone(), target, rel.display().to_string()));
                }
            }
        }
    }
    let forbidden: Vec<(String, String, String)> = edges
        .iter()
        .filter(|(from, to, _)| {
            RULES
                .iter()
                .any(|(m, banned)| m == from && (banned.contains(&"*") || banned.contains(&to.as_str())))
        })
        .cloned()
        .collect();
    let new: Vec<String> = forbidden
        .iter()
        .filter(|(from, to, _)| !DEBT.contains(&(from.as_str(), to.as_str())))
        .map(|(from, to, file)| format!("{file}: {from} -> {to}"))
        .collect();
    assert!(
        new.is_empty(),
        "forbidden module imports (see ARCHITECTURE.md): {new:#?}"
    );
    let paid: Vec<&(&str, &str)> = DEBT
        .iter()
        .filter(|(from, to)| !forbidden.iter().any(|(f, t, _)| f == from && t == to))
        .collect();
    assert!(
        paid.is_empty(),
        "these DEBT edges are gone; remove them from the list: {paid:?}"
    );
}
