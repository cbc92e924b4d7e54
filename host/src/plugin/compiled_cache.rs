//! Compiled components on disk, keyed by the `.wasm` digest and the engine, so a
//! restart does not compile again (components from componentize-js or -py take
//! seconds to compile).
//!
//! Safety rests on one rule: only files this host wrote into its own cache folder are
//! ever deserialized; an upload is always compiled from its `.wasm` bytes. The engine
//! key covers the wasmtime version and every setting that affects compiled code, so a
//! cache written by another build or configuration is never picked up.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::component::Component;

use super::{LoadError, Runtime};

#[derive(Debug, Clone)]
pub(super) struct CompiledCache {
    dir: PathBuf,
    engine_key: String,
    runtime: Runtime,
}

impl CompiledCache {
    pub fn new(dir: PathBuf, runtime: &Runtime) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        runtime
            .engine()
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        CompiledCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            runtime: runtime.clone(),
        }
    }

    /// The compiled component for the `.wasm` whose sha256 is `digest`, if this host
    /// cached it. An unusable entry is removed, so the caller compiles again.
    pub fn cached(&self, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.is_file() {
            return None;
        }
        match self.deserialize(&path) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "compiled cache entry unusable, compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Compiles `bytes` (whose sha256 is `digest`) and keeps the result for
    /// [`CompiledCache::cached`]; a cache that cannot be written costs only a warning.
    pub fn compile(&self, digest: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let component = self.runtime.compile(bytes)?;
        let path = self.path(digest);
        if let Err(error) = self.store(&path, &component) {
            tracing::warn!(file = %path.display(), %error, "cannot write compiled cache entry");
            return Ok(component);
        }
        // Serve the entry just written rather than the compiled copy: its code is then
        // mapped from the file, paged in as it runs and shared with the page cache,
        // instead of tens of MiB of private memory per component for the life of
        // this version (a componentize-js plugin compiles to about 46 MB).
        drop(component);
        match self.deserialize(&path) {
            Ok(component) => Ok(component),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "compiled cache entry unusable right after writing it, compiling again");
                let _ = std::fs::remove_file(&path);
                self.runtime.compile(bytes)
            }
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &std::path::Path) -> wasmtime::Result<Component> {
        // SAFETY: wasmtime requires that deserialized bytes come from a trusted
        // `serialize` of a compatible engine. This file is in the host's private
        // cache folder, written only by `store` below from code this host compiled,
        // and its name carries the engine's compatibility key.
        unsafe { Component::deserialize_file(self.runtime.engine(), path) }
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        // Write beside and rename, so a crash never leaves a torn entry under the
        // final name.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, path)
    }
}
