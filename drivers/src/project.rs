//! Finding and reading a project on disk: `wippy.lock`, the source dir, every definition file.
//! The engine parses; this file only walks directories and reads bytes for it.

use std::fs;
use std::path::{Path, PathBuf};
use weft_engine::entries::{self, Entry, EntryError};

pub const LOCK_FILE: &str = "wippy.lock";

/// The app folder, named the same way for every subcommand: `-C DIR`, or a first argument that
/// is a folder (main.rs turns `weft run DIR ...` into `weft run -C DIR ...`).
#[derive(clap::Args, Debug, Clone)]
pub struct AppDir {
    /// The app folder, holding src/ or wippy.lock (default: the current one); `weft <command>
    /// DIR` works too.
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

impl AppDir {
    /// The folder as an absolute path, or the error to print.
    pub fn root(&self) -> Result<PathBuf, String> {
        self.dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", self.dir.display()))
    }
}

/// Whether `dir` looks like an app: it holds `src/` or a lock file.
pub fn is_app_folder(dir: &Path) -> bool {
    dir.join("src").is_dir() || dir.join(LOCK_FILE).is_file()
}

#[derive(Debug, serde::Deserialize, Default)]
struct Lock {
    #[serde(default)]
    directories: Dirs,
}

#[derive(Debug, serde::Deserialize, Default)]
struct Dirs {
    src: Option<String>,
}

/// The source dir: `wippy.lock`'s `directories.src` when present, else `./src`.
pub fn source_dir(root: &Path) -> Result<PathBuf, String> {
    let lock = root.join(LOCK_FILE);
    let src = if lock.is_file() {
        let text = fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
        let l: Lock =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", lock.display()))?;
        l.directories.src.unwrap_or_else(|| "./src".into())
    } else {
        "./src".into()
    };
    let dir = root.join(src.trim_start_matches("./"));
    if !dir.is_dir() {
        return Err(format!(
            "source directory {} not found: name the app folder with -C DIR (or as the first \
             argument), create an app with `weft init`, or set directories.src in {LOCK_FILE}",
            dir.display()
        ));
    }
    Ok(dir)
}

fn skip_dir(name: &str) -> bool {
    if name == "node_modules" || name.starts_with('.') {
        return true;
    }
    skipped_dirs().iter().any(|d| d == name)
}

fn flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Folder names the loader skips, as Wippy's loader reads them from the environment:
/// SKIP_TEST_DIRS (comma-separated names) and the SKIP_*_TESTS switches.
fn skipped_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::env::var("SKIP_TEST_DIRS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for (var, names) in [
        ("SKIP_TEMPORAL_TESTS", &["_temporal", "temporal"][..]),
        ("SKIP_CLOUDSTORAGE_TESTS", &["cloudstorage"][..]),
        ("SKIP_SQS_TESTS", &["sqs"][..]),
        ("SKIP_NETWORK_TESTS", &["network"][..]),
    ] {
        if flag(var) {
            dirs.extend(names.iter().map(|s| s.to_string()));
        }
    }
    dirs
}

/// Collects definition files under `dir`. Folders are followed by their real path: one that
/// leads outside the project (a link to `/`) or back to a folder already walked (a link loop)
/// is an error naming it, so a walk always ends.
fn walk(
    root: &Path,
    dir: &Path,
    seen: &mut std::collections::BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let real = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if !real.starts_with(root) {
        return Err(format!(
            "{} leads outside the project (to {}); definitions must live inside it (a symlink?)",
            dir.display(),
            real.display()
        ));
    }
    if !seen.insert(real.clone()) {
        return Err(format!(
            "{} leads back to {}, which was already read (a symlink loop)",
            dir.display(),
            real.display()
        ));
    }
    let mut items: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    items.sort();
    for p in items {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !skip_dir(name) {
                walk(root, &p, seen, out)?;
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Every definition file under the app's source dir, read and parsed in path order: the
/// entries of the files that parsed, and the error of each file that did not.
pub fn parse_all(root: &Path) -> Result<(Vec<Entry>, Vec<EntryError>), String> {
    let src = source_dir(root)?;
    let mut files = Vec::new();
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    walk(&real_root, &src, &mut Default::default(), &mut files)?;

    let mut all = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(&f)
            .to_string_lossy()
            .replace('\\', "/");
        let text = match fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(EntryError {
                    file: rel.clone(),
                    problem: weft_engine::entries::EntryProblem::Unreadable {
                        reference: rel,
                        resolved: f.display().to_string(),
                        reason: e.to_string(),
                    },
                    line: None,
                    column: None,
                    entry: None,
                });
                continue;
            }
        };
        let mut resolve = |p: &str| -> Result<String, String> {
            let full = root.join(p);
            // The reference's text stays inside the project (the parser checks that); its
            // real path must too, or a symlink would read any file on the machine.
            let real = full
                .canonicalize()
                .map_err(|e| format!("cannot read {p}: {e}"))?;
            if !real.starts_with(&real_root) {
                return Err(format!(
                    "{p} leads outside the project (to {}); sources must live inside it",
                    real.display()
                ));
            }
            fs::read_to_string(&real).map_err(|e| format!("cannot read {p}: {e}"))
        };
        match entries::parse_file(&rel, &text, "", &mut resolve) {
            Ok(entries) => all.extend(entries),
            Err(e) => errors.push(e),
        }
    }
    Ok((all, errors))
}

/// Reads and parses every definition file under `src`, in path order; the first problem fails.
pub fn load(root: &Path) -> Result<Vec<Entry>, String> {
    let (all, errors) = parse_all(root)?;
    if let Some(e) = errors.into_iter().next() {
        return Err(e.to_string());
    }
    entries::check_unique(&all).map_err(|e| e.to_string())?;
    Ok(all)
}

/// Edit distance between two short names (ids, command names), a swap of neighbours counting
/// as one edit, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `want` when it is close enough to be a typo of it.
pub fn closest<'a>(want: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (want.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(want, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// " Did you mean X?" for a typo of one of `candidates`, else nothing.
pub fn did_you_mean<'a>(want: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(want, candidates) {
        Some(c) => format!("; did you mean {c}?"),
        None => String::new(),
    }
}

/// "entry 'x' not found" for `-x x`, with the nearest runnable entry and how to list them.
pub fn entry_not_found(id: &str, entries: &[Entry]) -> String {
    let runnable = entries
        .iter()
        .filter(|e| runnable(e))
        .map(|e| e.id.as_str());
    format!(
        "entry '{id}' not found{} (`weft run list` shows what can be run)",
        did_you_mean(id, runnable)
    )
}

/// Kinds `-x` can start on the terminal host.
pub fn runnable(e: &Entry) -> bool {
    e.kind == weft_engine::entries::EntryKind::ProcessLua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_nearest_name_and_strangers_find_none() {
        let ids = ["app:cli", "app:worker", "app:relay"];
        assert_eq!(closest("app:clii", ids), Some("app:cli"));
        assert_eq!(closest("app:wroker", ids), Some("app:worker"));
        assert_eq!(closest("zzz:nothing", ids), None);
        assert_eq!(
            did_you_mean("ecoh", ["echo", "list"]),
            "; did you mean echo?"
        );
        assert_eq!(did_you_mean("x", ["echo"]), "");
    }
}
