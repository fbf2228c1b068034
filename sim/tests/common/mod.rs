//! Loading a test app's entries from its folder (no driver involved).

use std::path::Path;
use weft_engine::entries::{self, Entry};

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut items: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

pub fn load(app: &str) -> Vec<Entry> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(app);
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    let mut all = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&f).unwrap();
        let mut resolve =
            |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| e.to_string());
        all.extend(entries::parse_file(&rel, &text, "", &mut resolve).unwrap());
    }
    all
}
