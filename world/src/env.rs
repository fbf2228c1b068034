//! `.env` files for `env.storage.file`: read before boot (the engine keeps their contents) and
//! written one key at a time by the `ENV_FILE_SET` command. In memory under the simulator.

use crate::{Storage, World};
use std::collections::BTreeMap;
use weft_engine::entries::Entry;
use weft_engine::env::parse_dotenv;
use weft_engine::value::{kind, ErrorValue, Value};

/// Replaces the `key=` line (keeping a trailing comment) or appends one.
pub fn set_line(text: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let parsed = parse_dotenv(line);
        if parsed.contains_key(key) && !done {
            match line.find('#') {
                Some(i) => out.push(format!("{key}={value} {}", &line[i..])),
                None => out.push(format!("{key}={value}")),
            }
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    if !done {
        out.push(format!("{key}={value}"));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

impl World {
    fn env_path(&self, p: &str) -> std::path::PathBuf {
        match &self.storage {
            Storage::Disk { root } => root.join(p),
            Storage::Memory | Storage::Sim(_) => std::path::PathBuf::from(p),
        }
    }

    /// Contents of every `env.storage.file` the entries declare (absent files are skipped).
    pub fn env_files(&self, entries: &[Entry]) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for e in entries
            .iter()
            .filter(|e| e.kind == weft_engine::entries::EntryKind::EnvStorageFile)
        {
            let Some(p) = e.data.get("file_path").and_then(Value::as_str) else {
                continue;
            };
            let text = match &self.storage {
                Storage::Disk { .. } => std::fs::read_to_string(self.env_path(p)).ok(),
                Storage::Memory | Storage::Sim(_) => self.mem_files.get(p).cloned(),
            };
            if let Some(t) = text {
                out.insert(p.to_string(), parse_dotenv(&t));
            }
        }
        out
    }

    /// `WorldCommand::EnvFileSet`: sets `key` in the file at `path` (created with the given
    /// modes when `auto` allows it).
    pub(crate) fn env_file_set(
        &mut self,
        path: &str,
        key: &str,
        value: &str,
        auto: bool,
        file_mode: u32,
        dir_mode: u32,
    ) -> Result<Value, ErrorValue> {
        match &self.storage {
            Storage::Memory | Storage::Sim(_) => {
                let cur = self.mem_files.get(path).cloned();
                if cur.is_none() && !auto {
                    return Err(ErrorValue::new(
                        kind::NOT_FOUND,
                        format!("{path}: no such file"),
                    ));
                }
                let t = set_line(&cur.unwrap_or_default(), key, value);
                self.mem_files.insert(path.to_string(), t);
                Ok(Value::Bool(true))
            }
            Storage::Disk { .. } => {
                let full = self.env_path(path);
                let io = |e: std::io::Error| {
                    ErrorValue::new(kind::INTERNAL, format!("{}: {e}", full.display()))
                };
                let cur = match std::fs::read_to_string(&full) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && auto => {
                        if let Some(dir) = full.parent() {
                            std::fs::create_dir_all(dir).map_err(io)?;
                            set_mode(dir, dir_mode);
                        }
                        String::new()
                    }
                    Err(e) => return Err(io(e)),
                };
                let tmp = full.with_extension("tmp");
                std::fs::write(&tmp, set_line(&cur, key, value)).map_err(io)?;
                set_mode(&tmp, file_mode);
                std::fs::rename(&tmp, &full).map_err(io)?;
                Ok(Value::Bool(true))
            }
        }
    }
}

#[cfg(unix)]
fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777));
}

#[cfg(not(unix))]
fn set_mode(_: &std::path::Path, _: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_line_replaces_keeps_comments_and_appends() {
        let t = "# top\nA=1 # one\nB=2\n";
        assert_eq!(set_line(t, "A", "9"), "# top\nA=9 # one\nB=2\n");
        assert_eq!(set_line(t, "C", "3"), "# top\nA=1 # one\nB=2\nC=3\n");
    }

    #[test]
    fn memory_files_need_auto_create() {
        let mut w = World::new(Storage::Memory);
        let set = |auto_create: bool| weft_engine::world::WorldCommand::EnvFileSet {
            path: ".env".into(),
            key: "K".into(),
            value: "v".into(),
            auto_create,
            file_mode: 0o644,
            dir_mode: 0o755,
        };
        assert_eq!(w.handle(set(false)).unwrap_err().kind, kind::NOT_FOUND);
        assert_eq!(w.handle(set(true)).unwrap(), Value::Bool(true));
        assert_eq!(w.mem_files[".env"], "K=v\n");
    }
}
