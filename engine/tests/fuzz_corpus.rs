//! Replays every fuzz corpus (`fuzz/corpus/<target>/*`) through its `weft_engine::fuzzing`
//! target, so seeds and past crashes stay regression tests under plain `cargo test`. The
//! targets are behind the `fuzzing` feature, which this crate's self dev-dependency turns on.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let r = std::panic::catch_unwind(|| run(&data));
        if r.is_err() {
            panic!("fuzz target {target} panicked on {}", f.display());
        }
    }
    println!("{target}: replayed {} corpus files", files.len());
}

#[test]
fn entries_corpus() {
    replay("entries", weft_engine::fuzzing::entries);
}

#[test]
fn json_corpus() {
    replay("json", weft_engine::fuzzing::json);
}

#[test]
fn lua_source_corpus() {
    replay("lua_source", weft_engine::fuzzing::lua_source);
}

#[test]
fn engine_ops_corpus() {
    replay("engine_ops", weft_engine::fuzzing::engine_ops);
}

#[test]
fn frame_corpus() {
    replay("frame", weft_engine::fuzzing::frame);
}

#[test]
fn payload_corpus() {
    replay("payload", weft_engine::fuzzing::payload);
}
