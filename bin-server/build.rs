//! Builds the web UI (the `frontend` crate, Leptos compiled to wasm32) and embeds it in bin-server.
//!
//! Steps, all offline and with nothing but cargo and the `wasm-bindgen-cli-support` library:
//! 1. a nested `cargo build -p frontend --target wasm32-unknown-unknown --profile wasm-release`
//!    into its own target dir (`<target>/frontend`): the outer cargo holds the lock on its own
//!    dir, and the outer build's flags and wrappers (coverage, clippy) must not leak into the wasm;
//! 2. wasm-bindgen generates the JS glue (`--target web`) into `$OUT_DIR/ui/`;
//! 3. the stylesheet, the boot scripts and the glue go under `/assets/<hash>/` (the hash covers
//!    every asset, so they can be cached forever) and `$OUT_DIR/ui_assets.rs` lists them for
//!    `include_bytes!` (read by `src/ui.rs`), each with its gzip (Zopfli, served as it is to
//!    clients that accept gzip) when that is smaller.
//!
//! `HOOKBIN_SKIP_UI=1` skips steps 1-2 and embeds a page saying the UI was not built: only for
//! developers iterating on the server. CI and the README's commands build the real UI.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WASM_PROFILE: &str = "wasm-release";

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("bin-server sits in the workspace")
        .to_owned();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let frontend = workspace.join("frontend");

    // Rebuild the UI only when something it is made of changed (the nested cargo is incremental,
    // so a rerun with nothing changed costs a couple of seconds).
    for path in [
        frontend.join("src"),
        frontend.join("Cargo.toml"),
        frontend.join("index.html"),
        frontend.join("style.css"),
        frontend.join("boot.js"),
        frontend.join("theme.js"),
        workspace.join("api/src"),
        workspace.join("api/Cargo.toml"),
        workspace.join("Cargo.lock"),
        workspace.join("Cargo.toml"),
        // The wasm target's rustflags (Leptos' `erase_components`) live there.
        workspace.join(".cargo/config.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=HOOKBIN_SKIP_UI");

    let ui_dir = out_dir.join("ui");
    let _ = fs::remove_dir_all(&ui_dir);
    fs::create_dir_all(&ui_dir).expect("create $OUT_DIR/ui");

    let skip = env::var("HOOKBIN_SKIP_UI").is_ok_and(|v| !v.is_empty() && v != "0");
    let built = if skip {
        println!("cargo:warning=HOOKBIN_SKIP_UI is set: this bin-server serves no UI");
        false
    } else {
        match build_wasm(&workspace, &out_dir) {
            Ok(wasm) => {
                if let Err(e) = bindgen(&wasm, &ui_dir) {
                    eprintln!("error: wasm-bindgen failed on {}: {e:#}", wasm.display());
                    return ExitCode::FAILURE;
                }
                true
            }
            Err(BuildError::MissingTarget) => {
                eprintln!(
                    "error: the {WASM_TARGET} target is not installed; run `rustup target add {WASM_TARGET}`"
                );
                return ExitCode::FAILURE;
            }
            Err(BuildError::Failed(msg)) => {
                eprintln!("error: building the UI failed: {msg}");
                return ExitCode::FAILURE;
            }
        }
    };

    if built {
        for name in ["style.css", "boot.js", "theme.js"] {
            fs::copy(frontend.join(name), ui_dir.join(name))
                .unwrap_or_else(|e| panic!("copy frontend/{name}: {e}"));
        }
    }
    let template = if built {
        fs::read_to_string(frontend.join("index.html")).expect("read frontend/index.html")
    } else {
        SKIPPED_INDEX.to_owned()
    };
    let gz_dir = out_dir.join("ui_gz");
    let _ = fs::remove_dir_all(&gz_dir);
    fs::create_dir_all(&gz_dir).expect("create $OUT_DIR/ui_gz");
    write_manifest(&ui_dir, &gz_dir, &template, &out_dir.join("ui_assets.rs"));
    ExitCode::SUCCESS
}

enum BuildError {
    MissingTarget,
    Failed(String),
}

/// Runs the nested cargo and returns the path of the built `frontend.wasm`.
fn build_wasm(workspace: &Path, out_dir: &Path) -> Result<PathBuf, BuildError> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    if !wasm_target_installed(&rustc) {
        return Err(BuildError::MissingTarget);
    }
    let target_dir = frontend_target_dir(out_dir, workspace);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "-p",
            "frontend",
            "--target",
            WASM_TARGET,
            "--profile",
            WASM_PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if leaks_into_nested_build(key) {
            cmd.env_remove(key);
        }
    }
    let output = cmd
        .output()
        .map_err(|e| BuildError::Failed(format!("could not run cargo: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            return Err(BuildError::MissingTarget);
        }
        // Show the nested compiler's errors: they are the useful part.
        eprintln!("{stderr}");
        return Err(BuildError::Failed(format!(
            "`cargo build -p frontend --target {WASM_TARGET}` exited with {}",
            output.status
        )));
    }
    let wasm = target_dir
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join("frontend.wasm");
    if wasm.is_file() {
        Ok(wasm)
    } else {
        Err(BuildError::Failed(format!(
            "{} was not produced",
            wasm.display()
        )))
    }
}

/// Environment the outer cargo sets for this build script, or that configures the outer build
/// only: none of it may reach the nested build (flags for the host, clippy as a wrapper, the
/// outer jobserver, this package's metadata).
fn leaks_into_nested_build(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "MAKEFLAGS",
        "MFLAGS",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_TARGET_TMPDIR",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Whether the toolchain building us has the wasm32 standard library.
fn wasm_target_installed(rustc: &OsString) -> bool {
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
    else {
        // Can't tell: let the nested build report it.
        return true;
    };
    if !out.status.success() {
        return true;
    }
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    fs::read_dir(&libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}

/// `<target>/frontend`, shared by every outer profile (debug, release, clippy) so the wasm is
/// built once. `<target>` is the ancestor of `$OUT_DIR` that cargo tags with `CACHEDIR.TAG`.
fn frontend_target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_owned)
        .unwrap_or_else(|| workspace.join("target"))
        .join("frontend")
}

fn bindgen(wasm: &Path, ui_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(wasm)
        .out_name("frontend")
        .web(true)?
        .typescript(false)
        .remove_name_section(true)
        .remove_producers_section(true)
        .generate(ui_dir)?;
    Ok(())
}

/// Writes `ui_assets.rs`: the asset version, `index.html` with the versioned asset prefix filled in,
/// and every file under `ui_dir` as a `ui::Asset` (its gzip written under `gz_dir`; none when it
/// is not smaller).
fn write_manifest(ui_dir: &Path, gz_dir: &Path, index_template: &str, dest: &Path) {
    let mut files = Vec::new();
    collect_files(ui_dir, ui_dir, &mut files);
    files.sort();

    // FNV-1a over names and contents: a cache-busting version, not a security boundary.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for rel in &files {
        let bytes = fs::read(ui_dir.join(rel)).expect("read built asset");
        for b in rel.as_bytes().iter().chain(&bytes) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let version = format!("{hash:016x}");
    let index = index_template.replace("{{ASSETS}}", &format!("/assets/{version}"));
    let index_path = dest.with_file_name("ui_index.html");
    fs::write(&index_path, index).expect("write ui_index.html");

    let mut src = String::new();
    writeln!(
        src,
        "/// The version in every asset URL: `/assets/{{ASSET_VERSION}}/...`."
    )
    .unwrap();
    writeln!(src, "pub const ASSET_VERSION: &str = {version:?};").unwrap();
    writeln!(src, "/// The SPA shell.").unwrap();
    writeln!(
        src,
        "pub const INDEX_HTML: &str = include_str!({:?});",
        index_path.display().to_string()
    )
    .unwrap();
    writeln!(
        src,
        "/// The assets under `/assets/{{ASSET_VERSION}}/`, by relative path."
    )
    .unwrap();
    writeln!(src, "pub const ASSETS: &[super::Asset] = &[").unwrap();
    for rel in &files {
        let abs = ui_dir.join(rel);
        let bytes = fs::read(&abs).expect("read built asset");
        let gz = gzip(&bytes);
        let gz_src = if gz.len() < bytes.len() {
            let gz_path = gz_dir.join(format!("{}.gz", rel.replace('/', "__")));
            fs::write(&gz_path, gz).expect("write gzipped asset");
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        } else {
            "None".to_owned()
        };
        let abs = abs.display().to_string();
        writeln!(
            src,
            "    super::Asset {{ name: {rel:?}, bytes: include_bytes!({abs:?}), gzip: {gz_src} }},"
        )
        .unwrap();
    }
    writeln!(src, "];").unwrap();
    fs::write(dest, src).expect("write ui_assets.rs");
}

/// `bytes` gzipped with Zopfli (5% smaller than gzip -9 on the wasm; a few seconds at the
/// workspace's `opt-level` for the `zopfli` package). Its header has no name and no time: the
/// same input always gives the same bytes, so the build stays reproducible.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zopfli::compress(
        zopfli::Options::default(),
        zopfli::Format::Gzip,
        bytes,
        &mut out,
    )
    .expect("gzip into memory");
    out
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            // Forward slashes: these are URL paths.
            let rel: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect();
            out.push(rel.join("/"));
        }
    }
}

const SKIPPED_INDEX: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hookbin: UI not built</title></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>UI not built</h1>
<p>This bin-server was built with <code>HOOKBIN_SKIP_UI=1</code>, so it carries no web UI.
The HTTP API under <code>/api</code> and the capture URLs under <code>/b/</code> work as usual.</p>
<p>Build without that variable to get the UI: <code>cargo run --release -p bin-server</code>.</p>
</body></html>
"#;
