//! Environment variables: storages and variables declared by `env.*` entries, resolved the way
//! Wippy's env registry does (a variable names a storage; reads fall back to its default).
//! No OS access: the OS environment comes in `NodeConfig::env_os` and `.env` file contents are
//! read by the driver before boot (`files`); writes to a file go out as the world command
//! `ENV_FILE_SET`. Decision: a file storage is read once at boot, so edits made to the file by
//! others while the node runs are not seen.

use crate::entries::{Entry, EntryKind};
use crate::value::{kind, ErrorValue, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub enum Storage {
    Os,
    Memory(BTreeMap<String, String>),
    Static(BTreeMap<String, String>),
    File {
        path: String,
        auto_create: bool,
        file_mode: i64,
        dir_mode: i64,
    },
    Router(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Variable {
    pub id: String,
    pub storage: String,
    pub default: Option<String>,
    pub readonly: bool,
}

/// A write the Lua side must still send to the world (file storages).
#[derive(Clone, Debug, PartialEq)]
pub struct FileWrite {
    pub path: String,
    pub key: String,
    pub value: String,
    pub auto_create: bool,
    pub file_mode: i64,
    pub dir_mode: i64,
}

#[derive(Clone, Debug, Default)]
pub struct EnvState {
    pub os: BTreeMap<String, String>,
    /// `.env` file contents by path (as written in the entry), loaded by the driver at boot.
    pub files: BTreeMap<String, BTreeMap<String, String>>,
    pub storages: BTreeMap<String, Storage>,
    /// Variables by public name (their `variable:` field, else their entry id).
    pub vars: BTreeMap<String, Variable>,
}

/// Parses `.env` text: `KEY=value` lines, `#` comments (also trailing), blank lines skipped.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(i) = l.find('#') {
            l = l[..i].trim();
        }
        if let Some((k, v)) = l.split_once('=') {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(Value::Table(t)) = v {
        for (k, v) in &t.map {
            m.insert(k.to_display(), v.to_display());
        }
    }
    m
}

fn abs_id(e: &Entry, id: &str) -> String {
    if id.contains(':') {
        id.to_string()
    } else {
        format!("{}:{id}", e.namespace)
    }
}

impl EnvState {
    /// Reads the env entries; errors are (entry id, message).
    pub fn configure(&mut self, entries: &[Entry]) -> Result<(), (String, String)> {
        for e in entries {
            let s = match e.kind {
                EntryKind::EnvStorageOs => Storage::Os,
                EntryKind::EnvStorageMemory => Storage::Memory(BTreeMap::new()),
                EntryKind::EnvStorageStatic => Storage::Static(str_map(e.data.get("values"))),
                EntryKind::EnvStorageFile => {
                    let Some(path) = e.data.get("file_path").and_then(Value::as_str) else {
                        return Err((e.id.clone(), "env.storage.file needs `file_path:`".into()));
                    };
                    let int = |k: &str, d: i64| match e.data.get(k) {
                        Some(Value::Int(i)) => *i,
                        Some(Value::Str(s)) => i64::from_str_radix(
                            String::from_utf8_lossy(s).trim_start_matches("0o"),
                            8,
                        )
                        .unwrap_or(d),
                        _ => d,
                    };
                    Storage::File {
                        path: path.to_string(),
                        auto_create: matches!(e.data.get("auto_create"), Some(Value::Bool(true))),
                        file_mode: int("file_mode", 0o644),
                        dir_mode: int("dir_mode", 0o755),
                    }
                }
                EntryKind::EnvStorageRouter => {
                    let list = match e.data.get("storages") {
                        Some(Value::Table(t)) => t
                            .array
                            .iter()
                            .filter_map(|v| v.as_str().map(|s| abs_id(e, s)))
                            .collect(),
                        _ => {
                            return Err((
                                e.id.clone(),
                                "env.storage.router needs a `storages:` list".into(),
                            ))
                        }
                    };
                    Storage::Router(list)
                }
                _ => continue,
            };
            self.storages.insert(e.id.clone(), s);
        }
        for e in entries.iter().filter(|e| e.kind == EntryKind::EnvVariable) {
            let name = e
                .data
                .get("variable")
                .and_then(Value::as_str)
                .map(String::from);
            if let Some(n) = &name {
                if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((
                        e.id.clone(),
                        format!("variable name '{n}' must use only A-Z, a-z, 0-9 and _"),
                    ));
                }
            }
            let Some(storage) = e.data.get("storage").and_then(Value::as_str) else {
                return Err((e.id.clone(), "env.variable needs `storage:`".into()));
            };
            let storage = abs_id(e, storage);
            if !self.storages.contains_key(&storage) {
                return Err((e.id.clone(), format!("storage '{storage}' not found")));
            }
            let public = name.unwrap_or_else(|| e.id.clone());
            if self.vars.contains_key(&public) {
                return Err((
                    e.id.clone(),
                    format!("variable name '{public}' defined twice"),
                ));
            }
            let default = e.data.get("default").map(Value::to_display);
            self.vars.insert(
                public,
                Variable {
                    id: e.id.clone(),
                    storage,
                    default: default.filter(|d| !d.is_empty()),
                    readonly: matches!(e.data.get("readonly"), Some(Value::Bool(true))),
                },
            );
        }
        Ok(())
    }

    /// The public name a key refers to: a variable name, or a variable's entry id.
    fn find(&self, key: &str) -> Option<(&String, &Variable)> {
        self.vars
            .get_key_value(key)
            .or_else(|| self.vars.iter().find(|(_, v)| v.id == key))
    }

    fn read(&self, storage: &str, name: &str, depth: usize) -> Option<String> {
        match self.storages.get(storage)? {
            Storage::Os => self.os.get(name).cloned(),
            Storage::Memory(m) | Storage::Static(m) => m.get(name).cloned(),
            Storage::File { path, .. } => self.files.get(path).and_then(|f| f.get(name)).cloned(),
            Storage::Router(list) if depth < 8 => {
                list.iter().find_map(|s| self.read(s, name, depth + 1))
            }
            Storage::Router(_) => None,
        }
        .filter(|v| !v.is_empty())
    }

    pub fn get(&self, key: &str) -> Result<String, ErrorValue> {
        if key.is_empty() {
            return Err(ErrorValue::new(kind::INVALID, "empty key"));
        }
        let Some((name, var)) = self.find(key) else {
            return Err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("environment variable not found: {key}"),
            ));
        };
        self.read(&var.storage, name, 0)
            .or_else(|| var.default.clone())
            .ok_or_else(|| {
                ErrorValue::new(
                    kind::NOT_FOUND,
                    format!("environment variable not found: {key}"),
                )
            })
    }

    /// Sets a variable; a file storage also returns the write the driver must persist.
    pub fn set(&mut self, key: &str, value: &str) -> Result<Option<FileWrite>, ErrorValue> {
        if key.is_empty() {
            return Err(ErrorValue::new(kind::INVALID, "empty key"));
        }
        let Some((name, var)) = self.find(key) else {
            return Err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("environment variable not found: {key}"),
            ));
        };
        if var.readonly {
            return Err(ErrorValue::new(
                kind::PERMISSION_DENIED,
                format!("environment variable is read-only: {key}"),
            ));
        }
        let name = name.clone();
        let mut target = var.storage.clone();
        // Routers write to their first storage.
        for _ in 0..8 {
            match self.storages.get(&target) {
                Some(Storage::Router(l)) if !l.is_empty() => target = l[0].clone(),
                _ => break,
            }
        }
        let ro = |what: &str| {
            Err(ErrorValue::new(
                kind::PERMISSION_DENIED,
                format!("{what} storage '{target}' is read-only"),
            ))
        };
        match self.storages.get_mut(&target) {
            Some(Storage::Memory(m)) => {
                m.insert(name, value.to_string());
                Ok(None)
            }
            Some(Storage::File {
                path,
                auto_create,
                file_mode,
                dir_mode,
            }) => {
                let w = FileWrite {
                    path: path.clone(),
                    key: name.clone(),
                    value: value.to_string(),
                    auto_create: *auto_create,
                    file_mode: *file_mode,
                    dir_mode: *dir_mode,
                };
                self.files
                    .entry(w.path.clone())
                    .or_default()
                    .insert(name, value.to_string());
                Ok(Some(w))
            }
            Some(Storage::Os) => ro("os"),
            Some(Storage::Static(_)) => ro("static"),
            _ => Err(ErrorValue::new(
                kind::INTERNAL,
                format!("storage '{target}' not found"),
            )),
        }
    }

    /// Every variable every storage holds (later storages do not override earlier ids).
    pub fn all(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for s in self.storages.values() {
            let m = match s {
                Storage::Os => self.os.clone(),
                Storage::Memory(m) | Storage::Static(m) => m.clone(),
                Storage::File { path, .. } => self.files.get(path).cloned().unwrap_or_default(),
                Storage::Router(_) => continue,
            };
            out.extend(m);
        }
        out
    }

    /// Replaces `${env:NAME}` in a string; unknown names become "" and are reported.
    pub fn interpolate(&self, s: &str, missing: &mut Vec<String>) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${env:") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 6..];
            match after.find('}') {
                Some(j) => {
                    let name = &after[..j];
                    match self.get(name) {
                        Ok(v) => out.push_str(&v),
                        Err(_) => missing.push(name.to_string()),
                    }
                    rest = &after[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn interpolate_value(&self, v: &mut Value, missing: &mut Vec<String>) {
        match v {
            Value::Str(b) => {
                if let Ok(s) = std::str::from_utf8(b) {
                    if s.contains("${env:") {
                        *v = Value::from(self.interpolate(s, missing));
                    }
                }
            }
            Value::Table(t) => {
                for x in t.array.iter_mut() {
                    self.interpolate_value(x, missing);
                }
                for (_, x) in t.map.iter_mut() {
                    self.interpolate_value(x, missing);
                }
            }
            _ => {}
        }
    }
}

/// Boot step: reads the env entries into `env`, then replaces `${env:NAME}` in every other
/// entry's data. Decision (the spec does not say): a name that resolves to nothing becomes ""
/// with a boot warning rather than failing the boot, so an unused entry cannot block a run.
pub fn boot_entries(
    env: &mut EnvState,
    mut entries: Vec<Entry>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, Box<(Entry, String)>> {
    if let Err((id, m)) = env.configure(&entries) {
        let e = entries
            .iter()
            .find(|e| e.id == id)
            .cloned()
            .unwrap_or_default();
        return Err(Box::new((e, m)));
    }
    for e in entries.iter_mut().filter(|e| !e.kind.is_env()) {
        let mut missing = Vec::new();
        // `source:` is Lua code (often loaded from a file), not configuration: left as is.
        for (k, v) in e.data.map.iter_mut() {
            if k.as_str() != Some("source") {
                env.interpolate_value(v, &mut missing);
            }
        }
        for v in e.data.array.iter_mut() {
            env.interpolate_value(v, &mut missing);
        }
        for m in missing {
            warnings.push(format!(
                "{}: entry '{}': ${{env:{m}}} has no value; replaced by \"\"",
                e.file, e.id
            ));
        }
    }
    Ok(entries)
}
