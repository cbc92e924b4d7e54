//! Embeds the `tessera new` templates of the languages other than Rust: every file
//! under `src/scaffold/<lang>/<kind>/` (`ts`, `py`) is listed in
//! `$OUT_DIR/scaffold_templates.rs` with its text (`include_str!`), so that a template
//! for another language or kind is one new folder of `.tmpl` files and nothing else.
//!
//! What it guarantees: the table lists exactly the files there, sorted, with paths
//! relative to their kind's folder and the `.tmpl` suffix removed; the build reruns
//! when anything under `src/scaffold` changes.

use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/scaffold");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut table = String::from(
        "/// One template file: its path in the plugin, and its text.\n\
         pub(crate) type File = (&'static str, &'static str);\n\
         /// Per language and kind, the template files.\n\
         pub(crate) const TEMPLATES: &[(&str, &str, &[File])] = &[\n",
    );
    for lang in ["ts", "py"] {
        for kind in sorted_dirs(&root.join(lang)) {
            let kind_dir = root.join(lang).join(&kind);
            let mut files = Vec::new();
            collect(&kind_dir, &mut files);
            files.sort();
            table.push_str(&format!("    ({lang:?}, {kind:?}, &[\n"));
            for file in files {
                let relative = file.strip_prefix(&kind_dir).unwrap().to_string_lossy();
                let Some(path) = relative.strip_suffix(".tmpl") else {
                    panic!("{} is not a .tmpl file", file.display());
                };
                table.push_str(&format!(
                    "        ({path:?}, include_str!({:?})),\n",
                    file.display().to_string()
                ));
            }
            table.push_str("    ]),\n");
        }
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("scaffold_templates.rs");
    std::fs::write(out, table).unwrap();
}

/// The names of the folders directly in `dir`, sorted (none if it does not exist).
fn sorted_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
