//! The crate's layering, as the crate doc's "Layout" list states it (top
//! down): a module imports only modules listed below it, so there is no
//! import circle and nothing runs back up to the command line. A new module
//! must be placed in that list to pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules of the Layout list, top first.
fn layers(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split_once("`]").map(|(m, _)| m.to_string()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under src/ belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a source text names as `crate::X` (unit tests
/// excluded: they may reach anywhere).
fn uses(text: &str) -> Vec<String> {
    named_after(text, "crate::")
        .into_iter()
        .filter(|n| n != "self")
        .collect()
}

/// The names that follow `prefix` in a source text, one per path and one
/// per item of a `prefix{a, b}` group (unit tests excluded).
fn named_after(text: &str, prefix: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_names(group));
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layers(&lib);
    assert!(order.len() > 10, "the Layout list of src/lib.rs: {order:?}");
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let module = module_of(&src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = rank.get(module.as_str()) else {
            problems.push(format!(
                "module {module} is not in the Layout list of src/lib.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in uses(&text) {
            match rank.get(used.as_str()) {
                Some(&r) if r < own => problems.push(format!(
                    "{} ({module}) imports {used}, which is above it",
                    file.strip_prefix(&src).unwrap().display()
                )),
                _ => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The first name of each item of a `{a, b::c, d as e}` group (the text
/// after its `{`).
fn group_names(group: &str) -> Vec<String> {
    let group = group.split('}').next().unwrap_or("");
    group
        .split(',')
        .map(|item| {
            item.trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// What a source text names as `super::X` (unit tests excluded: their
/// `use super::*` is the module they test).
fn supers(text: &str) -> Vec<String> {
    named_after(text, "super::")
}

/// The modules beside `file` (its folder's other files and subfolders):
/// what `super::` may name from it.
fn siblings(file: &Path) -> Vec<String> {
    let dir = if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().unwrap().parent().unwrap()
    } else {
        file.parent().unwrap()
    };
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.as_path() != file)
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .collect()
}

#[test]
fn no_module_reaches_back_up_into_its_parent() {
    // A module of a package may name its siblings through `super::`, never
    // what its parent (`mod.rs`) defines: the parent imports its modules,
    // so that would be an import circle within the package.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let named = supers(&text);
        if named.is_empty() {
            continue;
        }
        let siblings = siblings(&file);
        for name in named {
            if !siblings.contains(&name) {
                problems.push(format!(
                    "{} names super::{name}, which is its parent's, not a sibling module",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_two_modules_of_a_package_import_each_other() {
    // Siblings may name each other through `super::`, but not both ways
    // round (nor around a longer ring): that is an import circle inside
    // the package, which the layering test between packages cannot see.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // (folder of the siblings, module) -> the siblings it names.
    let mut edges: std::collections::BTreeMap<(PathBuf, String), Vec<String>> = Default::default();
    for file in &files {
        let (dir, module) = if file.file_name().is_some_and(|n| n == "mod.rs") {
            let dir = file.parent().unwrap();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            (dir.parent().unwrap().to_path_buf(), name)
        } else {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            (file.parent().unwrap().to_path_buf(), stem)
        };
        let siblings = siblings(file);
        // Code only: a doc link to a sibling (`[`super::args`]`) imports nothing.
        let code: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut named: Vec<String> = supers(&code)
            .into_iter()
            .filter(|n| siblings.contains(n) && *n != module)
            .collect();
        named.sort();
        named.dedup();
        edges.entry((dir, module)).or_default().extend(named);
    }
    let mut circles = Vec::new();
    for ((dir, start), _) in edges.iter() {
        // A path from `start` back to itself, depth first.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = std::collections::BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&(dir.clone(), at.clone())).into_iter().flatten() {
                if next == start {
                    let mut ring = path.clone();
                    ring.push(start.clone());
                    circles.push(format!(
                        "{}: {}",
                        dir.strip_prefix(&src).unwrap_or(dir).display(),
                        ring.join(" -> ")
                    ));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles inside a package:\n{}",
        circles.join("\n")
    );
}
