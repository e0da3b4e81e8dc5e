//! The shape of `shared/src`, checked: the layering rule (a module imports only from the
//! layers below it, as `lib.rs` lists them), no import cycle between any two modules, a doc
//! comment on every module, functions of at most 80 lines, and configuration files of at most
//! 400. Each checker is shown failing on a planted case.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Every top-level module, lowest layer first. A module may import only from a layer with a
/// smaller number; two modules of one layer never import each other.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 1),
    ("crypto", 1),
    ("ports", 2),
    ("auth", 2),
    ("config", 3),
    ("telemetry", 4),
    ("metrics", 4),
    ("app", 5),
    ("adapters", 6),
    ("http", 6),
    ("jobs", 6),
    ("secrets", 6),
    ("wiring", 7),
    ("entrypoints", 8),
];

/// What the crate root re-exports, by the module that defines it.
const ROOT_REEXPORTS: &[(&str, &str)] = &[
    ("AppState", "app"),
    ("Config", "config"),
    ("AwsSdkConfig", "wiring"),
];

const MAX_FUNCTION_LINES: usize = 80;
const MAX_CONFIG_FILE_LINES: usize = 400;

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, rank)| *rank)
}

/// The source without its line comments and without the unit tests (a trailing
/// `#[cfg(test)] mod tests`), which may import anything.
fn production_code(source: &str) -> String {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source names through `crate::`, in `use` lines and in paths.
fn crate_imports(source: &str) -> Vec<String> {
    let code = production_code(source);
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_dollar = at > 0 && rest.as_bytes()[at - 1] == b'$';
        rest = &rest[at + "crate::".len()..];
        if preceded_by_dollar {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            found.push(identifier(rest));
        }
    }
    found
        .into_iter()
        .filter(|name| !name.is_empty())
        .map(|name| {
            ROOT_REEXPORTS
                .iter()
                .find(|(item, _)| *item == name)
                .map_or(name, |(_, module)| (*module).to_owned())
        })
        .collect()
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// `a::{x, y}, b, c::z }` → `a`, `b`, `c`: the first name of each item of a `use` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && (c.is_alphanumeric() || c == '_') => {
                heads.push(identifier(&group[i..]));
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Upward or sideways imports of `module` in `source`, described.
fn violations(module: &str, source: &str) -> Vec<String> {
    let Some(own) = layer(module) else {
        return vec![format!("{module} is in no layer: add it to LAYERS")];
    };
    let mut found: Vec<String> = crate_imports(source)
        .into_iter()
        .filter(|target| target != module && target != "self")
        .filter_map(|target| match layer(&target) {
            None => Some(format!("imports {target}, which is in no layer")),
            Some(rank) if rank >= own => {
                Some(format!("imports {target} (layer {rank}) from layer {own}"))
            }
            Some(_) => None,
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(source_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's files by top-level module; the crate root and the CLI binary stand above
/// every layer.
fn library_files() -> Vec<(String, PathBuf)> {
    let root = src();
    source_files(&root)
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).unwrap();
            let first = relative.components().next()?.as_os_str().to_str()?;
            let module = first.trim_end_matches(".rs").to_owned();
            (module != "lib" && module != "bin").then_some((module, path))
        })
        .collect()
}

#[test]
fn the_layering_checker_catches_a_planted_upward_import() {
    let planted = "use crate::{\n    domain::Status,\n    http::ApiError,\n};\n";
    assert_eq!(
        violations("domain", planted),
        vec!["imports http (layer 6) from layer 1"]
    );
    assert_eq!(
        violations("adapters", "fn f() { crate::jobs::run(); }"),
        vec!["imports jobs (layer 6) from layer 6"],
        "modules of one layer stay apart"
    );
    assert_eq!(
        violations("http", "use crate::AppState;"),
        Vec::<String>::new(),
        "a root re-export counts as its module"
    );
    assert!(
        violations("domain", "// crate::http is named in a comment\n").is_empty(),
        "comments are not imports"
    );
    let with_tests =
        "use crate::ports::Clock;\n#[cfg(test)]\nmod tests {\n    use crate::http::x;\n}\n";
    assert!(violations("domain", with_tests).len() == 1);
    assert!(
        violations("app", with_tests).is_empty(),
        "unit tests may import anything"
    );
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let mut found = Vec::new();
    for (module, path) in library_files() {
        let source = fs::read_to_string(&path).unwrap();
        for violation in violations(&module, &source) {
            found.push(format!("{}: {violation}", path.display()));
        }
    }
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

/// `(name, lines)` of every function longer than `max` lines, outside unit tests. rustfmt puts
/// a function's closing brace at the indentation of its `fn` line.
fn long_functions(source: &str, max: usize) -> Vec<(String, usize)> {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let lines: Vec<&str> = code.lines().collect();
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let signature = trimmed
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("async ");
        let Some(name) = signature.strip_prefix("fn ") else {
            continue;
        };
        let has_body = lines[start..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';') || l.ends_with('}'))
            .is_some_and(|l| !l.ends_with(';'));
        if !has_body {
            continue; // a trait method's signature
        }
        let indent = &line[..line.len() - trimmed.len()];
        let closing = format!("{indent}}}");
        let Some(length) = lines[start..]
            .iter()
            .position(|l| {
                *l == closing
                    || (l.starts_with(indent)
                        && l.trim_end().ends_with('}')
                        && l.trim_start().starts_with("fn "))
            })
            .map(|end| end + 1)
        else {
            continue;
        };
        if length > max {
            long.push((identifier(name), length));
        }
    }
    long
}

#[test]
fn the_length_checker_catches_a_planted_long_function() {
    let body = "    let x = 1;\n".repeat(81);
    let planted = format!("pub async fn sprawling() {{\n{body}}}\n\nfn short() {{\n    1;\n}}\n");
    assert_eq!(
        long_functions(&planted, 80),
        vec![("sprawling".to_owned(), 83)]
    );
    let in_tests = format!("#[cfg(test)]\nmod tests {{\n    fn sprawling() {{\n{body}    }}\n}}\n");
    assert!(
        long_functions(&in_tests, 80).is_empty(),
        "tests may be long"
    );
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let mut found = Vec::new();
    for path in source_files(&src()) {
        let source = fs::read_to_string(&path).unwrap();
        for (name, lines) in long_functions(&source, MAX_FUNCTION_LINES) {
            found.push(format!("{}: fn {name} has {lines} lines", path.display()));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_module_says_what_it_owns() {
    let undocumented: Vec<String> = source_files(&src())
        .into_iter()
        .filter(|path| !fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "no module doc comment: {undocumented:?}"
    );
}

#[test]
fn no_configuration_file_is_longer_than_400_lines() {
    let config = src().join("config");
    assert!(config.is_dir(), "configuration is a folder of sections");
    for path in source_files(&config) {
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= MAX_CONFIG_FILE_LINES,
            "{} has {lines} lines",
            path.display()
        );
    }
}

/// `a::{b, c::{d, e}}, f` → `a::b`, `a::c::d`, `a::c::e`, `f`: the paths a `use` tree names.
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    fn split_top(list: &str) -> Vec<&str> {
        let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
        for (i, c) in list.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&list[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&list[start..]);
        parts
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        for item in split_top(tree) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match (item.find('{'), item.rfind('}')) {
                (Some(open), Some(close)) => {
                    let mut head = prefix.to_vec();
                    head.extend(
                        item[..open]
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    );
                    walk(&head, &item[open + 1..close], out);
                }
                _ => {
                    let name = item.split(" as ").next().unwrap_or(item);
                    let mut path = prefix.to_vec();
                    path.extend(name.split("::").map(|s| s.trim().to_owned()));
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// Every module of the library and the modules each one names, by path (`app::uploads`).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = src();
    let mut paths = std::collections::BTreeMap::new();
    for (_, file) in library_files() {
        let relative = file.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        paths.insert(parts.join("::"), (parts, file));
    }
    let known: std::collections::BTreeSet<String> = paths.keys().cloned().collect();
    let resolve = |own: &[String], path: &[String]| -> Option<String> {
        let mut full: Vec<String> = match path.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") | Some("self") => own.to_vec(),
            _ => return None,
        };
        for segment in path {
            match segment.as_str() {
                "crate" | "self" => {}
                "super" => {
                    full.pop();
                }
                other => full.push(other.to_owned()),
            }
        }
        (1..=full.len())
            .rev()
            .map(|n| full[..n].join("::"))
            .find(|candidate| known.contains(candidate))
    };
    let mut graph = std::collections::BTreeMap::new();
    for (module, (parts, file)) in &paths {
        let code = production_code(&fs::read_to_string(file).unwrap());
        let mut named = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("use ") {
            rest = &rest[at + 4..];
            let end = rest.find(';').unwrap_or(rest.len());
            named.extend(use_paths(&rest[..end]));
        }
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("crate::") || word.starts_with("super::") {
                named.push(word.split("::").map(str::to_owned).collect());
            }
        }
        let targets = named
            .iter()
            .filter_map(|path| resolve(parts, path))
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A module and one it contains (`app` and `app::uploads`) may name each other: the parent
/// declares and re-exports, the child uses its siblings through the parent.
fn nested(a: &str, b: &str) -> bool {
    a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

#[test]
fn use_trees_expand_to_every_path_they_name() {
    let paths = use_paths("crate::{app::{AppState, audit::AuditTrail}, domain::Status as S}");
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        vec![
            "crate::app::AppState",
            "crate::app::audit::AuditTrail",
            "crate::domain::Status"
        ]
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph();
    assert!(
        graph["app::uploads"].contains("app::audit"),
        "the graph sees sibling imports"
    );
    let mut cycles = Vec::new();
    for (module, targets) in &graph {
        // Depth-first from each module along non-nested edges: back to it is a cycle.
        let mut stack: Vec<(String, Vec<String>)> = targets
            .iter()
            .filter(|t| !nested(module, t))
            .map(|t| (t.clone(), vec![module.clone(), t.clone()]))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            if &at == module {
                cycles.push(trail.join(" → "));
                break;
            }
            if !seen.insert(at.clone()) {
                continue;
            }
            for next in graph.get(&at).into_iter().flatten() {
                if !nested(&at, next) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
