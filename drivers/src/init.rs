//! `weft init`: a lock file for an existing project, or a small runnable app in an empty folder.
//! Never overwrites a file that exists.

use std::fs;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The folder to set up (created if missing; default: the current one).
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Source directory recorded in the lock file.
    #[arg(short = 'd', long, default_value = "./src")]
    src_dir: String,
    /// Directory for installed modules.
    #[arg(long, default_value = ".wippy")]
    modules_dir: String,
    /// Lock file name.
    #[arg(short = 'l', long, default_value = "wippy.lock")]
    lock_file: String,
}

const INDEX: &str = r#"version: "1.0"
namespace: app

entries:
  - name: terminal
    kind: terminal.host
    lifecycle:
      auto_start: true

  - name: hello
    kind: process.lua
    source: file://hello.lua
    method: main
    modules: [io]
    meta:
      command:
        name: hello
        short: Say hello
"#;

const HELLO: &str = r#"local io = require("io")

local function main(name: string?): integer
    io.print("Hello, " .. (name or "world") .. "!")
    return 0
end

return { main = main }
"#;

fn write_new(path: &Path, text: &str) -> Result<bool, String> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(true)
}

pub fn init(a: InitArgs) -> i32 {
    let root = a.dir.as_path();
    if let Err(e) = fs::create_dir_all(root) {
        eprintln!("weft init: {}: {e}", root.display());
        return 1;
    }
    let src = root.join(a.src_dir.trim_start_matches("./"));
    let lock = format!(
        "directories:\n  modules: {}\n  src: {}\n",
        a.modules_dir, a.src_dir
    );
    let had_src = src.is_dir();
    let mut r = write_new(&root.join(&a.lock_file), &lock);
    if r.is_ok() && !had_src {
        r = write_new(&src.join("_index.yaml"), INDEX)
            .and_then(|_| write_new(&src.join("hello.lua"), HELLO));
    }
    match r {
        Ok(_) => {
            if had_src {
                println!("wrote {} for the existing {}", a.lock_file, a.src_dir);
            } else {
                println!(
                    "created {} and a starter app in {}; try: weft run hello",
                    a.lock_file, a.src_dir
                );
            }
            0
        }
        Err(e) => {
            eprintln!("weft init: {e}");
            1
        }
    }
}
