//! `weft check`: validates an app without running it. Loads every definition file, compiles
//! every Lua entry, resolves imports, modules and references, and reports every problem found
//! with its file:line; no process starts, no Lua runs, nothing is written.

use crate::project;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use weft_engine::boot;
use weft_engine::entries::{self, Entry};
use weft_engine::lua::{self, LuaRuntime};
use weft_engine::node::{Node, NodeConfig};
use weft_engine::supervisor::{Lifecycle, Service};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    app: project::AppDir,
}

#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, e: &Entry, message: impl Into<String>) {
        self.errors.push(at(e, message));
    }
}

/// A problem of entry `e`, worded as boot words its errors.
fn at(e: &Entry, message: impl Into<String>) -> String {
    format!("{}: entry '{}': {}", place(e), e.id, message.into())
}

fn place(e: &Entry) -> String {
    match e.line {
        Some(l) => format!("{}:{l}", e.file),
        None => e.file.clone(),
    }
}

/// `require("name")` calls written with a literal name: (1-based line, name). Comment lines
/// are skipped; a require built at run time cannot be checked and is left alone.
fn literal_requires(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("require") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "require".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == ':') {
                continue;
            }
            let arg = rest.trim_start();
            let arg = arg.strip_prefix('(').map_or(arg, str::trim_start);
            let Some(q) = arg.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            if let Some(end) = arg[1..].find(q) {
                out.push((i + 1, arg[1..1 + end].to_string()));
            }
        }
    }
    out
}

/// Whether `require(name)` finds something for `e`: one of its modules or import aliases.
fn grants(e: &Entry, name: &str) -> bool {
    lua::modules_of(e).iter().any(|m| m == name)
        || lua::imports_of(e)
            .unwrap_or_default()
            .iter()
            .any(|(alias, _)| alias == name)
}

/// Literal `require`s of `e`'s source that nothing provides. A file shared by several entries
/// (one method each) is only flagged for names none of them grants, since a require inside
/// one entry's method may be meant for that entry alone.
fn check_requires(e: &Entry, all: &[Entry], rt: &LuaRuntime, r: &mut Report) {
    let Some(src) = e.data.get("source").and_then(|v| v.as_str()) else {
        return;
    };
    let globals = rt.lua().globals();
    let sharing: Vec<&Entry> = all
        .iter()
        .filter(|o| e.source_file.is_some() && o.source_file == e.source_file)
        .collect();
    for (line, name) in literal_requires(src) {
        let global = globals.contains_key(name.as_str()).unwrap_or(false);
        if global || grants(e, &name) || sharing.iter().any(|o| grants(o, &name)) {
            continue;
        }
        let fix = if lua::MODULES.contains(&name.as_str()) {
            format!(
                "add `{name}` to the `modules:` of entry '{}' ({})",
                e.id,
                place(e)
            )
        } else {
            format!(
                "no module by that name; a library goes in the `imports:` of entry '{}' ({})",
                e.id,
                place(e)
            )
        };
        let msg = format!("require(\"{name}\"): {fix}");
        match &e.source_file {
            Some(f) => r
                .errors
                .push(format!("{f}:{line}: entry '{}': {msg}", e.id)),
            None => r.error(e, format!("source line {line}: {msg}")),
        }
    }
}

/// Every problem of the app at `root`, without running it.
fn check_app(root: &Path) -> Result<(Report, usize), String> {
    let mut r = Report::default();
    let (parsed, errors) = project::parse_all(root)?;
    r.errors.extend(errors.iter().map(|e| e.to_string()));
    // Duplicates: every later definition of an id, naming the first.
    let mut first: BTreeMap<String, Entry> = BTreeMap::new();
    let mut unique = Vec::new();
    for e in parsed {
        match first.get(&e.id) {
            Some(f) => {
                if let Err(d) = entries::check_unique(&[f.clone(), e.clone()]) {
                    r.errors.push(d.to_string());
                }
            }
            None => {
                first.insert(e.id.clone(), e.clone());
                unique.push(e);
            }
        }
    }
    let count = unique.len();

    let mut rt = LuaRuntime::detached().map_err(|e| format!("starting Lua: {e}"))?;
    let mut env = weft_engine::env::EnvState {
        os: std::env::vars().collect(),
        ..Default::default()
    };
    let entries = match weft_engine::env::boot_entries(&mut env, unique.clone(), &mut r.warnings) {
        Ok(e) => e,
        Err(b) => {
            r.error(&b.0, b.1.clone());
            unique
        }
    };
    let by_id: BTreeMap<String, Rc<Entry>> = entries
        .iter()
        .map(|e| (e.id.clone(), Rc::new(e.clone())))
        .collect();
    let kind_of = |id: &str| by_id.get(id).map(|e| e.kind.as_str());
    let lua_kinds = ["process.lua", "function.lua", "library.lua"];

    for e in &entries {
        let k = e.kind.as_str();
        if !e.kind.is_supported() {
            if boot::LATER.contains(&k) || boot::LATER_FAMILIES.iter().any(|f| k.starts_with(f)) {
                r.warnings.push(at(
                    e,
                    format!("kind {k} is not supported by weft yet; ignored"),
                ));
            } else {
                r.error(e, format!("unknown kind '{k}'"));
            }
            continue;
        }
        match k {
            "process.host" | "terminal.host" => {
                if let Err(m) = Lifecycle::from_data(&e.data) {
                    r.error(e, m);
                }
            }
            _ if lua_kinds.contains(&k) => {
                if let Err(ce) = rt.prepare(e) {
                    r.error(e, ce.message);
                    continue;
                }
                for m in lua::unavailable_modules(e) {
                    r.warnings
                        .push(at(e, format!("module '{m}' is not available in weft yet")));
                }
                check_requires(e, &entries, &rt, &mut r);
            }
            "db.sql.sqlite" | "store.memory" | "store.sql" => {
                if let Err(m) = weft_engine::storage_entries::check(e, &by_id) {
                    r.error(e, m);
                }
            }
            "process.service" => {
                let (process, host, requires) = match Service::from_entry(e) {
                    Ok(s) => (s.process, s.host, s.lifecycle.requires),
                    Err(m) => {
                        r.error(e, m);
                        continue;
                    }
                };
                match kind_of(&process) {
                    Some("process.lua") => {}
                    Some(other) => r.error(
                        e,
                        format!("process: '{process}' is a {other}, not a process.lua"),
                    ),
                    None => r.error(e, format!("process: entry '{process}' not found")),
                }
                if kind_of(&host) != Some("process.host") {
                    r.error(e, format!("host: process.host '{host}' not found"));
                }
                for dep in &requires {
                    if kind_of(dep) != Some("process.service") {
                        r.warnings.push(at(
                            e,
                            format!("requires '{dep}', which is no process.service"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    // Imports, once every Lua entry is compiled; an error names the importing entry. An entry
    // that did not compile has its imports checked all the same, on an empty body.
    for e in entries
        .iter()
        .filter(|e| lua_kinds.contains(&e.kind.as_str()))
    {
        let stub;
        let e = if rt.prepare(e).is_ok() {
            e
        } else {
            let mut data = e.data.clone();
            data.map.retain(|(k, _)| k.as_str() != Some("source"));
            stub = Entry {
                data: data.with("source", "return {}".into()),
                ..e.clone()
            };
            &stub
        };
        if let Err(ce) = rt.link(e, &|id: &str| by_id.get(id).cloned()) {
            let owner = by_id.get(&ce.entry).map_or(e, |o| o.as_ref());
            let msg = at(owner, ce.message);
            if !r.errors.contains(&msg) {
                r.errors.push(msg);
            }
        }
    }
    // What the checks above do not cover (service dependency cycles, …): a boot that starts
    // nothing, since no step of the node is ever run.
    if r.errors.is_empty() {
        let booted = Node::builder(NodeConfig::default())
            .log_level(weft_engine::node::Level::Error)
            .entries(entries)
            .build(None);
        if let Err(e) = booted {
            r.errors.push(e.to_string());
        }
    }
    Ok((r, count))
}

pub fn check(a: CheckArgs) -> i32 {
    let result = a.app.root().and_then(|root| check_app(&root));
    let (r, count) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for w in &r.warnings {
        println!("warning: {w}");
    }
    for e in &r.errors {
        println!("error: {e}");
    }
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if r.errors.is_empty() {
        let entries = if count == 1 { "entry" } else { "entries" };
        println!(
            "ok: {count} {entries}, {}",
            plural(r.warnings.len(), "warning")
        );
        0
    } else {
        eprintln!(
            "error: {} in {} ({})",
            plural(r.errors.len(), "problem"),
            a.app.dir.display(),
            plural(r.warnings.len(), "warning")
        );
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_requires_are_found_with_their_lines() {
        let src = "local a = require(\"io\")\n-- require('no')\nlocal b, c = require 'time', my_require('x')\nlocal d = require(name)\n";
        assert_eq!(
            literal_requires(src),
            vec![(1, "io".to_string()), (3, "time".to_string())]
        );
    }
}
