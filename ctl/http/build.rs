//! Builds the web page (`web/`) with npm and esbuild and embeds it: `npm ci` from the lock file
//! into a scratch directory under OUT_DIR (never into the source tree), `node web/build.mjs`,
//! then `web_assets.rs` lists every file of the build's manifest with `include_bytes!`, so the
//! binary serves the page with no node at run time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One file of `manifest.json`, as `web/build.mjs` writes it.
#[derive(serde::Deserialize)]
struct Entry {
    path: String,
    file: String,
    content_type: String,
    gzip: Option<String>,
    br: Option<String>,
    immutable: bool,
}

fn main() {
    if let Err(message) = build() {
        eprintln!("error: cannot build aifactory-http's web page: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let web = manifest_dir.join("web");
    for watched in ["src", "build.mjs", "package.json", "package-lock.json"] {
        println!("cargo::rerun-if-changed={}", web.join(watched).display());
    }

    let scratch = out_dir.join("npm");
    npm_ci(&web, &scratch)?;
    let dist = out_dir.join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist)
            .map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    run(Command::new("node")
        .current_dir(&web)
        .arg("build.mjs")
        .arg("--out")
        .arg(&dist)
        .arg("--node-modules")
        .arg(scratch.join("node_modules")))?;

    let manifest = dist.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not the manifest build.mjs writes: {e}",
            manifest.display()
        )
    })?;
    let generated = out_dir.join("web_assets.rs");
    std::fs::write(&generated, assets_source(&dist, &entries)?)
        .map_err(|e| format!("cannot write {}: {e}", generated.display()))
}

/// `npm ci` into `scratch` from the page's lock file, skipped when the same lock is installed.
fn npm_ci(web: &Path, scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let lock = read(&web.join("package-lock.json"))?;
    let installed = scratch.join("installed-lock.json");
    if std::fs::read(&installed).is_ok_and(|done| done == lock)
        && scratch.join("node_modules").is_dir()
    {
        return Ok(());
    }
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(web.join(file), scratch.join(file))
            .map_err(|e| format!("cannot copy {file} to {}: {e}", scratch.display()))?;
    }
    run(Command::new("npm")
        .current_dir(scratch)
        .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
        .args(["--loglevel", "error"]))?;
    std::fs::write(&installed, lock)
        .map_err(|e| format!("cannot write {}: {e}", installed.display()))
}

/// Rust source for the `ASSETS` table: every file embedded by absolute path.
fn assets_source(dist: &Path, entries: &[Entry]) -> Result<String, String> {
    let embed = |file: &str| -> Result<String, String> {
        let path = dist.join(file);
        if !path.is_file() {
            return Err(format!(
                "the manifest lists {}, which build.mjs did not write",
                path.display()
            ));
        }
        Ok(format!("include_bytes!({:?})", path.display().to_string()))
    };
    let optional = |file: &Option<String>| -> Result<String, String> {
        Ok(match file {
            Some(file) => format!("Some({})", embed(file)?),
            None => "None".into(),
        })
    };
    let mut source = String::from("pub static ASSETS: &[Asset] = &[\n");
    for entry in entries {
        let _ = writeln!(
            source,
            "    Asset {{ path: {:?}, content_type: {:?}, body: {}, gzip: {}, br: {}, immutable: {} }},",
            entry.path,
            entry.content_type,
            embed(&entry.file)?,
            optional(&entry.gzip)?,
            optional(&entry.br)?,
            entry.immutable,
        );
    }
    source.push_str("];\n");
    Ok(source)
}

/// Runs a build step, its output kept for the error: cargo reads a build script's stdout.
fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "`{program}` is not installed: the page is built with Node.js 18 or newer and npm (`apt-get install nodejs npm`)"
            ),
            _ => format!("cannot run `{program}`: {e}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` failed ({}):\n{}{}",
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
