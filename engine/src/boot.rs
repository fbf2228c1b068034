//! Boot: turns loaded entries into a running node: kinds checked, hosts up, Lua compiled,
//! services started level by level in dependency order. Reads no files; entries come parsed.

use crate::entries::{Entry, EntryKind};
use crate::lua::LuaRuntime;
use crate::node::{Core, Level};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

/// Families of Wippy kinds (by prefix) that Weft accepts and ignores for now.
pub const LATER_FAMILIES: &[&str] = &[
    "store.",
    "http.",
    "queue.",
    "temporal.",
    "exec.",
    "cloudstorage.",
    "security.",
    "contract.",
    "template.",
    "fs.",
    "ns.",
    "network",
    "pg.",
    "config.",
    "env.",
    "db.",
    "function.",
    "process.wasm",
    "workflow.",
    "library.lua.bc",
    "process.lua.bc",
];

/// Kinds Wippy has that Weft accepts and ignores for now (with a warning), so apps still boot.
pub const LATER: &[&str] = &[
    "workflow.lua",
    "module.lua",
    "http.service",
    "http.router",
    "http.endpoint",
    "http.static",
    "db.sql.postgres",
    "db.sql.mysql",
    "ns.definition",
    "ns.requirement",
    "ns.dependency",
    "fs.directory",
    "template.set",
    "template.jet",
    "security.policy",
    "security.token_store",
    "contract.definition",
    "contract.binding",
];

#[derive(Debug, Clone, PartialEq)]
pub struct BootError {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub entry: Option<String>,
    pub message: String,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(e) = &self.entry {
            write!(f, "entry '{e}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for BootError {}

fn at(e: &Entry, message: impl Into<String>) -> BootError {
    BootError {
        file: Some(e.file.clone()),
        line: e.line,
        entry: Some(e.id.clone()),
        message: message.into(),
    }
}

/// What boot found worth telling the user without failing.
#[derive(Debug, Default)]
pub struct BootReport {
    pub warnings: Vec<String>,
    pub services: usize,
}

/// Loads entries into the node and the Lua runtime, then starts auto_start services.
pub(crate) fn boot(
    c: &mut Core,
    lua: &mut LuaRuntime,
    entries: Vec<Entry>,
) -> Result<BootReport, BootError> {
    let mut report = BootReport::default();
    let entries = crate::env::boot_entries(&mut c.env, entries, &mut report.warnings)
        .map_err(|b| at(&b.0, b.1.clone()))?;
    for e in &entries {
        if !e.kind.is_supported() {
            if LATER.contains(&e.kind.as_str())
                || LATER_FAMILIES
                    .iter()
                    .any(|f| e.kind.as_str().starts_with(f))
            {
                report.warnings.push(format!(
                    "{}: entry '{}': kind {} is not supported by weft yet; ignored",
                    e.file, e.id, e.kind
                ));
                continue;
            }
            return Err(at(e, format!("unknown kind '{}'", e.kind)));
        }
        c.entries.insert(e.id.clone(), Rc::new(e.clone()));
    }
    for e in &entries {
        match e.kind {
            EntryKind::ProcessHost | EntryKind::TerminalHost => {
                if let Err(m) = crate::supervisor::Lifecycle::from_data(&e.data) {
                    return Err(at(e, m));
                }
                let auto = crate::supervisor::Lifecycle::from_data(&e.data)
                    .map(|l| l.auto_start)
                    .unwrap_or(false);
                if auto || e.kind == EntryKind::TerminalHost {
                    c.hosts.insert(e.id.clone(), e.kind.clone());
                }
            }
            EntryKind::ProcessLua | EntryKind::FunctionLua | EntryKind::LibraryLua => {
                lua.prepare(e).map_err(|ce| at(e, ce.message))?;
                for m in crate::lua::unavailable_modules(e) {
                    report.warnings.push(format!(
                        "{}: entry '{}': module '{m}' is not available in weft yet; require(\"{m}\") will fail",
                        e.file, e.id
                    ));
                }
            }
            EntryKind::DbSqlSqlite | EntryKind::StoreMemory | EntryKind::StoreSql => {
                crate::storage_entries::check(e, &c.entries).map_err(|m| at(e, m))?;
            }
            _ => {}
        }
    }
    // Imports resolve once everything is compiled; an error points at the importing entry.
    for e in entries.iter().filter(|e| e.kind.is_lua()) {
        let lookup = |id: &str| c.entries.get(id).cloned();
        if let Err(ce) = lua.link(e, &lookup) {
            let owner = c.entries.get(&ce.entry).cloned();
            return Err(at(owner.as_deref().unwrap_or(e), ce.message));
        }
    }
    let mut services: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.kind == EntryKind::ProcessService)
    {
        let idx = c.add_service(e).map_err(|m| at(e, m))?;
        let svc = &c.services[idx];
        match c.entries.get(&svc.process) {
            Some(p) if p.kind == EntryKind::ProcessLua => {}
            Some(p) => {
                return Err(at(
                    e,
                    format!(
                        "process: '{}' is a {}, not a process.lua",
                        svc.process, p.kind
                    ),
                ))
            }
            None => return Err(at(e, format!("process: entry '{}' not found", svc.process))),
        }
        if !entries
            .iter()
            .any(|h| h.id == svc.host && h.kind == EntryKind::ProcessHost)
        {
            return Err(at(
                e,
                format!("host: process.host '{}' not found", svc.host),
            ));
        }
        services.insert(e.id.clone(), idx);
    }
    // Level by level: a service starts once everything it requires has started.
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<(String, usize)> = services
        .iter()
        .filter(|(_, &i)| c.services[i].lifecycle.auto_start)
        .map(|(k, &i)| (k.clone(), i))
        .collect();
    pending.sort_by_key(|(_, i)| *i);
    let mut level = 0;
    while !pending.is_empty() {
        let (ready, wait): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, i)| {
            c.services[*i]
                .lifecycle
                .requires
                .iter()
                .all(|r| started.contains(r) || !services.contains_key(r))
        });
        if ready.is_empty() {
            let names: Vec<String> = wait.iter().map(|(n, _)| n.clone()).collect();
            return Err(BootError {
                file: None,
                line: None,
                entry: None,
                message: format!(
                    "services wait on each other (dependency cycle): {}",
                    names.join(", ")
                ),
            });
        }
        for (name, idx) in ready {
            c.services[idx].level = level;
            c.start_service(idx);
            started.insert(name);
            report.services += 1;
        }
        level += 1;
        pending = wait;
    }
    for w in &report.warnings {
        c.log(Level::Warn, w.clone(), vec![]);
    }
    let loaded = c.entries.clone();
    c.registry.init(&loaded);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeConfig;
    use crate::value::{Table, Value};

    fn lua_entry(id: &str, kind: &str, line: usize, imports: &[(&str, &str)]) -> Entry {
        let (namespace, name) = crate::entries::parse_id(id);
        let mut data = Table::default().with("source", Value::from("return {}"));
        if !imports.is_empty() {
            let mut m = Table::default();
            for (alias, target) in imports {
                m = m.with(alias, Value::from(*target));
            }
            data = data.with("imports", Value::table(m));
        }
        Entry {
            id: id.into(),
            namespace,
            name,
            kind: kind.into(),
            data,
            file: "app.yaml".into(),
            line: Some(line),
            ..Default::default()
        }
    }

    fn try_boot(entries: Vec<Entry>) -> Result<BootReport, BootError> {
        crate::node::Node::builder(NodeConfig::default())
            .entries(entries)
            .build(None)
            .map(|b| b.report)
    }

    #[track_caller]
    fn boot_err(entries: Vec<Entry>) -> BootError {
        match try_boot(entries) {
            Ok(_) => panic!("boot must fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn imports_resolve_or_fail_naming_the_entry() {
        let ok = vec![
            lua_entry("app:p", "process.lua", 1, &[("u", "app:u")]),
            lua_entry("app:u", "library.lua", 2, &[("v", "v")]),
            lua_entry("app:v", "library.lua", 3, &[]),
        ];
        try_boot(ok).expect("imports resolve");

        let e = boot_err(vec![lua_entry(
            "app:p",
            "process.lua",
            4,
            &[("u", "app:gone")],
        )]);
        assert_eq!(e.entry.as_deref(), Some("app:p"));
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("app:gone"), "{e}");

        let e = boot_err(vec![
            lua_entry("app:p", "process.lua", 1, &[("u", "app:q")]),
            lua_entry("app:q", "process.lua", 2, &[]),
        ]);
        assert!(e.message.contains("not a library.lua"), "{e}");

        let e = boot_err(vec![
            lua_entry("app:p", "process.lua", 1, &[("a", "app:a")]),
            lua_entry("app:a", "library.lua", 2, &[("b", "app:b")]),
            lua_entry("app:b", "library.lua", 3, &[("a", "app:a")]),
        ]);
        assert!(e.message.contains("import cycle"), "{e}");
        assert_eq!(e.entry.as_deref(), Some("app:b"));
        assert_eq!(e.line, Some(3));

        let e = boot_err(vec![lua_entry(
            "app:a",
            "library.lua",
            7,
            &[("a", "app:a")],
        )]);
        assert!(e.message.contains("import cycle: app:a -> app:a"), "{e}");

        // An alias may shadow a built-in global (Wippy's tests import a library as `assert`).
        let shadow = vec![
            lua_entry("app:p", "process.lua", 1, &[("assert", "app:a")]),
            lua_entry("app:a", "library.lua", 2, &[]),
        ];
        try_boot(shadow).expect("an alias may shadow a built-in");
    }
}
