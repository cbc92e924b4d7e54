//! Compiled components on disk, keyed by the `.wasm` digest and the engine, so a
//! restart does not compile again (components from componentize-js or -py take
//! seconds to compile).
//!
//! Safety rests on one rule: only files this host wrote into its own cache folder (itself,
//! or its own executable in a child process) are ever deserialized; an upload is always
//! compiled from its `.wasm` bytes. The engine
//! key covers the wasmtime version and every setting that affects compiled code, so a
//! cache written by another build or configuration is never picked up.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;

use super::{LoadError, Runtime};

/// The exit status of `tessera compile-component` when wasmtime refused the component
/// (its reason on standard error).
pub const COMPILE_REFUSED_EXIT: i32 = 3;

/// Why a child process did not compile a component.
enum ChildCompile {
    /// The component is refused: the child's compiler said it is not valid, or died
    /// compiling it.
    Refused(String),
    /// The child could not do its part (not started, its entry not written or not
    /// moved into place): compile in the host instead.
    Unavailable(std::io::Error),
}

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
    ///
    /// With a compiler executable ([`super::Limits::compiler`]) the compile runs in a
    /// child process that writes the entry, and this process only maps it: the
    /// compiler's working set (hundreds of MiB for a 12 MB componentize-js component,
    /// which the allocator would keep, fragmented, after the compile) never enters the
    /// host. A child that cannot run, or an entry this engine cannot load, falls back to
    /// compiling here; a component the child's compiler refuses, or one that kills it,
    /// is refused.
    pub fn compile(&self, digest: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let path = self.path(digest);
        if let Some(compiler) = &self.runtime.limits().compiler {
            match self.compile_in_child(compiler, &path, bytes) {
                Ok(()) => match self.deserialize(&path) {
                    Ok(component) => return Ok(component),
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "the child compiler's entry is unusable, compiling in the host");
                        let _ = std::fs::remove_file(&path);
                    }
                },
                Err(ChildCompile::Refused(reason)) => return Err(LoadError::NotAComponent(reason)),
                Err(ChildCompile::Unavailable(error)) => {
                    tracing::warn!(compiler = %compiler.display(), %error, "cannot compile in a child process, compiling in the host");
                }
            }
        }
        let component = self.runtime.compile(bytes)?;
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

    /// Runs `compiler compile-component`, which reads the component on its standard
    /// input and writes the compiled entry beside `path`; renamed into place here.
    fn compile_in_child(
        &self,
        compiler: &Path,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(), ChildCompile> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};

        std::fs::create_dir_all(&self.dir).map_err(ChildCompile::Unavailable)?;
        let partial = self.partial(path);
        let mut command = Command::new(compiler);
        command.arg("compile-component").arg("--out").arg(&partial);
        if let Some(reservation) = self.runtime.engine_spec().pooled_memory {
            command.arg("--pooled-memory").arg(reservation.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ChildCompile::Unavailable)?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(bytes))
            .transpose();
        let output = child
            .wait_with_output()
            .map_err(ChildCompile::Unavailable)?;
        let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        match output.status.code() {
            Some(0) => {
                written.map_err(ChildCompile::Unavailable)?;
                std::fs::rename(&partial, path).map_err(|error| {
                    let _ = std::fs::remove_file(&partial);
                    ChildCompile::Unavailable(error)
                })
            }
            Some(COMPILE_REFUSED_EXIT) => Err(ChildCompile::Refused(said)),
            Some(_) => {
                let _ = std::fs::remove_file(&partial);
                Err(ChildCompile::Unavailable(std::io::Error::other(format!(
                    "{}: {said}",
                    output.status
                ))))
            }
            // Killed by a signal: out of memory, or a crash in the compiler. Whatever
            // did that to the child would do it to the host.
            None => {
                let _ = std::fs::remove_file(&partial);
                Err(ChildCompile::Refused(format!(
                    "compiling it ended the compiler process ({})",
                    output.status
                )))
            }
        }
    }

    /// A name beside `path` that no other write uses, renamed over `path` when complete
    /// so that a crash never leaves a torn entry under the final name.
    fn partial(&self, path: &Path) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        path.with_extension(format!("partial-{}-{n}", std::process::id()))
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: wasmtime requires that deserialized bytes come from a trusted
        // `serialize` of a compatible engine. This file is in the host's private
        // cache folder, written only by `store` below from code this host compiled, or
        // by this host's own executable in a child process (`compile_in_child`) for an
        // engine of the same spec, and its name carries the engine's compatibility key
        // (wasmtime checks it again on loading).
        unsafe { Component::deserialize_file(self.runtime.engine(), path) }
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let partial = self.partial(path);
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, path)
    }
}
