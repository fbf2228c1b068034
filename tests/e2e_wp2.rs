//! End-to-end tests of the Tier-2 modules (env, uuid, hash, base64, yaml, payload, errors)
//! through the `weft` binary, under `weft run` and `weft sim`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A copy of tests/apps/modules in a fresh temp folder (the app writes its .env file).
fn app_copy(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("weft-e2e-wp2-{tag}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(dir.join("src")).unwrap();
    let src = repo_root().join("tests/apps/modules/src");
    for f in ["_index.yaml", "cli.lua"] {
        fs::copy(src.join(f), dir.join("src").join(f)).unwrap();
    }
    dir
}

fn weft(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.args(args).current_dir(cwd).env_remove("WEFT_E2E_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run weft")
}

fn text(o: &Output) -> String {
    format!(
        "--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn modules_app_runs_reads_os_env_and_writes_its_env_file() {
    let dir = app_copy("run");
    let o = weft(
        &dir,
        &["run", "-x", "app:cli"],
        &[("WEFT_E2E_TOKEN", "from-os")],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("greeting\thello"), "{out}");
    assert!(
        out.contains("token\tfrom-os"),
        "router falls through to the OS env\n{out}"
    );
    assert!(out.contains("set\ttrue\tnil"), "{out}");
    assert!(out.contains("token now\tsaved"), "{out}");
    assert!(out.contains("\t4\tnil"), "uuid version\n{out}");
    assert!(out.contains("sha256	"), "{out}");
    assert!(out.contains("b64\td2VmdA=="), "{out}");
    assert!(out.contains("yaml\ta: 1 b: 2 "), "{out}");
    assert!(out.contains("payload\tjson/plain\t1"), "{out}");
    assert!(out.contains("error\touter: inner\tNotFound"), "{out}");
    let env_file = fs::read_to_string(dir.join("data/app.env")).expect("the .env file was created");
    assert_eq!(env_file, "WEFT_E2E_TOKEN=saved\n");

    // A second run reads the value back from the file, before the OS environment.
    let o = weft(
        &dir,
        &["run", "-x", "app:cli"],
        &[("WEFT_E2E_TOKEN", "from-os")],
    );
    assert!(text(&o).contains("token\tsaved"), "{}", text(&o));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn modules_app_under_sim_is_deterministic_and_ignores_the_os_env() {
    let dir = app_copy("sim");
    let args = ["sim", ".", "--seed", "5", "-x", "app:cli"];
    let a = weft(&dir, &args, &[("WEFT_E2E_TOKEN", "from-os")]);
    let b = weft(&dir, &args, &[]);
    let (ta, tb) = (text(&a), text(&b));
    assert_eq!(a.status.code(), Some(0), "{ta}");
    assert!(
        ta.contains("token\tnone"),
        "no OS env under sim: the default\n{ta}"
    );
    assert!(ta.contains("token now\tsaved"), "{ta}");
    let uuid_line = |s: &str| s.lines().find(|l| l.starts_with("uuid")).map(String::from);
    assert!(uuid_line(&ta).is_some(), "{ta}");
    assert_eq!(
        uuid_line(&ta),
        uuid_line(&tb),
        "same seed, same uuid\n{ta}\n{tb}"
    );
    assert!(
        !dir.join("data/app.env").exists(),
        "sim writes files in memory only"
    );
    let c = weft(&dir, &["sim", ".", "--seed", "6", "-x", "app:cli"], &[]);
    assert_ne!(
        uuid_line(&ta),
        uuid_line(&text(&c)),
        "another seed, another uuid"
    );
    let _ = fs::remove_dir_all(&dir);
}
