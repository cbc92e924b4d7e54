//! Plugin files for the deployment tests: their bytes and names, new versions of a
//! plugin's code (a custom section appended), and changes to a host's plugins folder.

use std::path::Path;

use serde_json::Value;

/// The bytes of a plugin file.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A component's bytes with a custom section named `tessera-test` holding `tag`
/// appended: the same code under another digest, which a host takes for a new
/// version of the plugin.
pub fn with_custom_section(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"tessera-test";
    let mut contents = Vec::new();
    leb128(name.len(), &mut contents);
    contents.extend_from_slice(name);
    contents.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // section id 0: a custom section
    leb128(contents.len(), &mut out);
    out.extend(contents);
    out
}

/// Puts `bytes` at `dir/file` the safe way: written under a name the host ignores,
/// then renamed into place, so the host never reads a partial file.
pub fn install(dir: &Path, file: &str, bytes: &[u8]) {
    let partial = dir.join(format!(".{file}.partial"));
    std::fs::write(&partial, bytes).expect("write the partial file");
    std::fs::rename(&partial, dir.join(file)).expect("rename into place");
}

/// Overwrites `dir/file` in place (truncate, then write), as `cp` does: the host may
/// see the file half written, and must cope.
pub fn overwrite(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).expect("overwrite");
}

/// The file name a plugin path is copied under.
pub fn file_name(plugin: &str) -> String {
    Path::new(plugin)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `GET /plugins` entry of the plugin file named `file` in `listing`.
pub fn listing_entry<'a>(listing: &'a [Value], file: &str) -> Option<&'a Value> {
    listing.iter().find(|entry| entry["file"] == file)
}
