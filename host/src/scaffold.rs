//! `tessera new`: writes a new plugin crate, a small working plugin of one kind
//! (command handler, projection or query handler) with a README, from the templates
//! in `scaffold/` (embedded in the binary), in Rust by default or, with `--lang`, in
//! TypeScript or Python.
//!
//! What it guarantees: it never overwrites anything (the crate's folder must not
//! exist), it accepts only kebab-case names that make valid crate, plugin and Rust
//! type names, and the crate it writes builds for `wasm32-wasip2` as written:
//! - in a plugins workspace (a folder whose `Cargo.toml` is a workspace defining the
//!   `tessera-sdk` workspace dependency, such as Tessera's `plugins/`, the default),
//!   the crate uses the workspace's dependencies and is added to its `members` (as
//!   `cargo new` does), so `tessera dev` builds and serves it;
//! - anywhere else, the crate is a workspace of its own and finds the SDK by path
//!   (`--sdk`, by default the SDK of the checkout this binary was built from).
//!
//! The three templates fit together, in any language and across languages: a
//! projection made `--from` a command handler consumes its events (`<Type>Recorded` on
//! the streams `<from>-<id>`), and a query handler made `--from` that projection reads
//! its table (`totals`). A command handler comes with native given/when/then tests in
//! every language (`cargo test`, `npm test`, `python3 -m unittest`).
//!
//! TypeScript and Python plugins are a folder each (`package.json`, `tsconfig.json`
//! and `src/index.ts`; `app.py`), filled from `scaffold/<lang>/<kind>/`, which the
//! build embeds whole (`build.rs`): a template for another language or kind is one more
//! folder there. Every kind has one in TypeScript and Python; a language whose folder
//! lacks a kind is refused for that kind ([`ScaffoldError::Unsupported`]), so a new
//! language can start with one kind. Where a template names the SDK (`{{sdk_path}}`:
//! every TypeScript file that links it, a Python command handler's tests, which import
//! it), the plugin links the language's SDK: `--sdk`, else `sdk-ts` or `sdk-py` beside
//! it, else the checkout's `plugins/sdk-ts` or `plugins/sdk-py`. A TypeScript plugin
//! gets `npm install` run once, which writes its lockfile; a Python plugin's build
//! needs nothing beside it (the SDK's build adds the SDK).

use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

/// The kinds of plugin `tessera new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    CommandHandler,
    Projection,
    QueryHandler,
}

impl Kind {
    /// The kind as the command line and the template folders spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CommandHandler => "command-handler",
            Kind::Projection => "projection",
            Kind::QueryHandler => "query-handler",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Kind::CommandHandler => "command handler",
            Kind::Projection => "projection",
            Kind::QueryHandler => "query handler",
        }
    }
}

/// The languages `tessera new` writes plugins in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate on the Rust SDK (`plugins/sdk`).
    #[default]
    Rust,
    /// An npm package on the TypeScript SDK (`plugins/sdk-ts`).
    Ts,
    /// A folder with an `app.py` on the Python SDK (`plugins/sdk-py`).
    Py,
}

impl Lang {
    /// The language's folder under `scaffold/` and its `--lang` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Ts => "ts",
            Lang::Py => "py",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Ts => "TypeScript",
            Lang::Py => "Python",
        }
    }
}

/// The templates of the languages other than Rust: per language and kind, the files.
type Table = &'static [(&'static str, &'static str, &'static [generated::File])];

/// The template files of `lang` and `kind` in `table`, if it has them.
fn templates_of(table: Table, lang: Lang, kind: Kind) -> Option<&'static [generated::File]> {
    table
        .iter()
        .find(|(l, k, _)| *l == lang.as_str() && *k == kind.as_str())
        .map(|(_, _, files)| *files)
}

/// Refuses a kind that `lang` has no template of in `table`, naming the languages that
/// have one (Rust has every kind).
fn check_supported(table: Table, lang: Lang, kind: Kind) -> Result<(), ScaffoldError> {
    if lang == Lang::Rust || templates_of(table, lang, kind).is_some() {
        return Ok(());
    }
    Err(ScaffoldError::Unsupported {
        lang: lang.title(),
        kind: kind.words(),
        supported: [Lang::Rust, Lang::Ts, Lang::Py]
            .into_iter()
            .filter(|other| *other == Lang::Rust || templates_of(table, *other, kind).is_some())
            .map(Lang::as_str)
            .collect(),
    })
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/scaffold_templates.rs"));
}

/// What to write, and where.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    /// The language of the plugin.
    pub lang: Lang,
    /// The crate's and the plugin's name, in kebab-case.
    pub name: String,
    /// The folder the crate's folder is made in.
    pub dir: PathBuf,
    /// For a projection, the command handler whose events it consumes; for a query
    /// handler, the projection it reads. By default the plugin's own name.
    pub from: Option<String>,
    /// The `tessera-sdk` crate, for a crate outside a plugins workspace; for a
    /// TypeScript plugin, the TypeScript SDK's folder (`plugins/sdk-ts`); for a Python
    /// plugin, the Python SDK's folder (`plugins/sdk-py`).
    pub sdk: Option<PathBuf>,
}

/// Why nothing (or not everything) was written; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable; the caller picks another.
    #[error("{name:?} cannot be a plugin's name: {reason}")]
    InvalidName { name: String, reason: String },
    /// The crate's folder exists; the caller picks another name or folder.
    #[error("{} already exists; nothing was written", .0.display())]
    Exists(PathBuf),
    /// `--from` was given to a kind that reads nothing.
    #[error("--from applies to projections and query handlers only")]
    FromNotAllowed,
    /// Outside a plugins workspace, the SDK must be found; the caller passes `--sdk`.
    #[error(
        "{} is not a plugins workspace and no tessera-sdk was found{}; pass --sdk PATH \
         (the `plugins/sdk` folder of Tessera's repository) or make the crate inside \
         Tessera's plugins/ folder",
        .dir.display(),
        .tried.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default()
    )]
    NoSdk {
        dir: PathBuf,
        tried: Option<PathBuf>,
    },
    /// No template of that kind exists in that language (one whose templates do not
    /// cover every kind yet); the caller picks one of the languages named.
    #[error(
        "there is no {kind} template in {lang} yet; write it in {}: --lang {}",
        .supported.join(" or "),
        .supported.join(" or --lang ")
    )]
    Unsupported {
        lang: &'static str,
        kind: &'static str,
        supported: Vec<&'static str>,
    },
    /// The TypeScript or Python SDK was not found; the caller passes `--sdk`.
    #[error(
        "no {lang} SDK ({what}) at {}; pass --sdk PATH (the `plugins/{folder}` folder of \
         Tessera's repository)",
        .tried.display()
    )]
    NoLangSdk {
        lang: &'static str,
        what: &'static str,
        folder: &'static str,
        tried: PathBuf,
    },
    /// The workspace manifest cannot be read or changed; the message says why.
    #[error("cannot use the workspace manifest {}: {message}", .path.display())]
    Manifest { path: PathBuf, message: String },
    /// A file could not be written; the caller fixes the folder and tries again.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    pub kind: Kind,
    pub lang: Lang,
    pub name: String,
    /// The new crate's folder.
    pub path: PathBuf,
    /// The files written, in the crate's folder.
    pub files: Vec<PathBuf>,
    /// The workspace manifest the crate was added to, if it was.
    pub joined: Option<PathBuf>,
    /// For a TypeScript plugin: why `npm install` did not run or failed, if it did not
    /// succeed (the plugin is written; the caller runs it by hand).
    pub install_failed: Option<String>,
}

impl fmt::Display for Scaffolded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lang != Lang::Rust {
            return self.fmt_other(f);
        }
        let kind = self.kind.words();
        writeln!(
            f,
            "created the {kind} {} in {}",
            self.name,
            self.path.display()
        )?;
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        if let Some(manifest) = &self.joined {
            writeln!(
                f,
                "added it to the workspace members in {}",
                manifest.display()
            )?;
            writeln!(
                f,
                "`make dev` (tessera dev) builds and serves it with the others."
            )?;
        }
        if self.kind == Kind::CommandHandler {
            writeln!(
                f,
                "test it natively: cargo test --manifest-path {}/Cargo.toml",
                self.path.display()
            )?;
        }
        write!(
            f,
            "build it: cargo build --manifest-path {}/Cargo.toml --target wasm32-wasip2 --release",
            self.path.display()
        )
    }
}

impl Scaffolded {
    /// What a TypeScript or Python plugin's author does next.
    fn fmt_other(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "created the {} {} {} in {}",
            self.lang.title(),
            self.kind.words(),
            self.name,
            self.path.display()
        )?;
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        let path = self.path.display();
        match self.lang {
            Lang::Ts => {
                if let Some(why) = &self.install_failed {
                    writeln!(f, "`npm install` did not succeed ({why}); run it in {path}")?;
                }
                if self.kind == Kind::CommandHandler {
                    writeln!(f, "test it natively: (cd {path} && npm test)")?;
                }
                writeln!(
                    f,
                    "build it: (cd {path} && npm run build)   # dist/{}.wasm",
                    self.name
                )?;
            }
            _ => {
                if self.kind == Kind::CommandHandler {
                    writeln!(
                        f,
                        "test it natively: (cd {path} && python3 -m unittest discover -s tests)"
                    )?;
                }
                writeln!(
                    f,
                    "build it: target/py-venv/bin/python plugins/sdk-py/bin/tessera-build-py {path}   # dist/{}.wasm",
                    self.name
                )?
            }
        }
        write!(
            f,
            "`tessera dev --sources {}` rebuilds and serves it on every save",
            self.path.parent().unwrap_or(Path::new(".")).display()
        )
    }
}

/// Writes the plugin `request` asks for.
pub fn new(request: &Request) -> Result<Scaffolded, ScaffoldError> {
    new_from(request, generated::TEMPLATES)
}

/// [`new`], with the other languages' templates taken from `table`.
fn new_from(request: &Request, table: Table) -> Result<Scaffolded, ScaffoldError> {
    check_name(&request.name)?;
    let from = match (request.kind, &request.from) {
        (Kind::CommandHandler, Some(_)) => return Err(ScaffoldError::FromNotAllowed),
        (_, Some(from)) => {
            check_name(from)?;
            from.clone()
        }
        (_, None) => request.name.clone(),
    };
    check_supported(table, request.lang, request.kind)?;
    let path = request.dir.join(&request.name);
    if path.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists(path));
    }
    // Only the other languages are in the table (Rust's templates are `templates(kind)`),
    // and `check_supported` made sure theirs are there.
    if let Some(templates) = templates_of(table, request.lang, request.kind) {
        return new_other(request, templates, &from, path);
    }

    // Everything that can be refused is decided before anything is written.
    let workspace = PluginsWorkspace::find(&request.dir)?;
    let manifest = match &workspace {
        Some(_) => fill(
            MANIFEST_IN_WORKSPACE,
            &request.name,
            &from,
            request.kind,
            None,
        ),
        None => {
            let sdk = find_sdk(&request.dir, request.sdk.as_deref())?;
            fill(
                MANIFEST_STANDALONE,
                &request.name,
                &from,
                request.kind,
                Some(&sdk),
            )
        }
    };
    let mut files = vec![(PathBuf::from("Cargo.toml"), manifest)];
    for (file, template) in templates(request.kind) {
        files.push((
            PathBuf::from(file),
            fill(template, &request.name, &from, request.kind, None),
        ));
    }

    // `create_dir` (not `create_dir_all`) for the crate itself: if the folder appeared
    // since the check above, this fails rather than writes into it.
    std::fs::create_dir_all(&request.dir).map_err(|source| io(&request.dir, source))?;
    std::fs::create_dir(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => ScaffoldError::Exists(path.clone()),
        _ => io(&path, source),
    })?;
    std::fs::create_dir(path.join("src")).map_err(|source| io(&path.join("src"), source))?;
    for (file, text) in &files {
        let target = path.join(file);
        std::fs::write(&target, text).map_err(|source| io(&target, source))?;
    }
    format_sources(&path);

    let joined = match workspace {
        Some(workspace) => {
            let manifest = workspace.manifest.clone();
            workspace.join(&request.name)?;
            Some(manifest)
        }
        None => None,
    };
    Ok(Scaffolded {
        kind: request.kind,
        lang: Lang::Rust,
        name: request.name.clone(),
        path,
        files: files.into_iter().map(|(file, _)| file).collect(),
        joined,
        install_failed: None,
    })
}

/// Writes a TypeScript or Python plugin into `path` (checked not to exist), from
/// `templates`, the language's template folder of the kind.
fn new_other(
    request: &Request,
    templates: &[generated::File],
    from: &str,
    path: PathBuf,
) -> Result<Scaffolded, ScaffoldError> {
    // The SDK is looked up only for templates that name it: a Python projection or
    // query handler is built with the SDK the build brings, and links none.
    let sdk = if templates
        .iter()
        .any(|(_, text)| text.contains("{{sdk_path}}"))
    {
        Some(sdk_link(
            request.lang,
            &request.dir,
            request.sdk.as_deref(),
        )?)
    } else {
        None
    };
    let files: Vec<(PathBuf, String)> = templates
        .iter()
        .map(|(file, template)| {
            // The SDK's link first: `fill` would write a Rust SDK's path there.
            let template = template.replace("{{sdk_path}}", sdk.as_deref().unwrap_or_default());
            let text = fill(&template, &request.name, from, request.kind, None)
                .replace("{{dir}}", &path.display().to_string());
            (PathBuf::from(file), text)
        })
        .collect();

    std::fs::create_dir_all(&request.dir).map_err(|source| io(&request.dir, source))?;
    std::fs::create_dir(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => ScaffoldError::Exists(path.clone()),
        _ => io(&path, source),
    })?;
    for (file, text) in &files {
        let target = path.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| io(parent, source))?;
        }
        std::fs::write(&target, text).map_err(|source| io(&target, source))?;
    }
    let install_failed = match request.lang {
        Lang::Ts => npm_install(&path).err(),
        _ => None,
    };
    Ok(Scaffolded {
        kind: request.kind,
        lang: request.lang,
        name: request.name.clone(),
        path,
        files: files.into_iter().map(|(file, _)| file).collect(),
        joined: None,
        install_failed,
    })
}

/// How a TypeScript or Python plugin made in `dir` names its language's SDK, as the
/// content of a JSON string (which a Python string reads alike): `../sdk-ts` or
/// `../sdk-py` when the SDK is beside the plugin (Tessera's `plugins/`, so the checkout
/// can move), else the SDK's absolute path (`--sdk`, else the SDK of the checkout this
/// binary was built from).
fn sdk_link(lang: Lang, dir: &Path, given: Option<&Path>) -> Result<String, ScaffoldError> {
    // The SDK's folder name in `plugins/`, and the file that shows a folder is the SDK.
    let (folder, marker, what) = match lang {
        Lang::Py => ("sdk-py", "tessera_sdk/__init__.py", "a tessera_sdk package"),
        _ => ("sdk-ts", "package.json", "a package.json of @tessera/sdk"),
    };
    let beside = dir.join(folder);
    let candidate = match given {
        Some(path) => path.to_path_buf(),
        None if beside.join(marker).is_file() => beside.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins")
            .join(folder),
    };
    let sdk = candidate
        .join(marker)
        .is_file()
        .then(|| candidate.canonicalize().ok())
        .flatten()
        .ok_or_else(|| ScaffoldError::NoLangSdk {
            lang: lang.title(),
            what,
            folder,
            tried: candidate.clone(),
        })?;
    let link = if beside.canonicalize().ok().as_ref() == Some(&sdk) {
        format!("../{folder}")
    } else {
        sdk.display().to_string()
    };
    // The link goes into JSON strings: escaped as JSON, without the quotes.
    let json = serde_json::to_string(&link).expect("a string serializes");
    Ok(json[1..json.len() - 1].to_string())
}

/// `npm install` in a new TypeScript plugin: links the SDK and writes the lockfile.
/// Nothing is downloaded (the SDK's own packages are installed in the SDK's folder).
fn npm_install(path: &Path) -> Result<(), String> {
    let output = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(path)
        .output()
        .map_err(|error| format!("cannot run npm: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm install failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

const MANIFEST_IN_WORKSPACE: &str = include_str!("scaffold/Cargo.workspace.toml.tmpl");
const MANIFEST_STANDALONE: &str = include_str!("scaffold/Cargo.standalone.toml.tmpl");

/// The files of each kind besides `Cargo.toml`, by path in the crate.
fn templates(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::CommandHandler => &[
            (
                "src/lib.rs",
                include_str!("scaffold/command-handler/lib.rs.tmpl"),
            ),
            (
                "src/tests.rs",
                include_str!("scaffold/command-handler/tests.rs.tmpl"),
            ),
            (
                "README.md",
                include_str!("scaffold/command-handler/README.md.tmpl"),
            ),
        ],
        Kind::Projection => &[
            (
                "src/lib.rs",
                include_str!("scaffold/projection/lib.rs.tmpl"),
            ),
            (
                "README.md",
                include_str!("scaffold/projection/README.md.tmpl"),
            ),
        ],
        Kind::QueryHandler => &[
            (
                "src/lib.rs",
                include_str!("scaffold/query-handler/lib.rs.tmpl"),
            ),
            (
                "README.md",
                include_str!("scaffold/query-handler/README.md.tmpl"),
            ),
        ],
    }
}

/// A template with its placeholders filled in.
fn fill(template: &str, name: &str, from: &str, kind: Kind, sdk: Option<&Path>) -> String {
    let description = match kind {
        Kind::CommandHandler => format!("The {name} command handler"),
        Kind::Projection => format!("The {name} projection, of {from}'s events"),
        Kind::QueryHandler => format!("The {name} query handler, reading {from}"),
    };
    let sdk = sdk
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    // TOML basic strings: the only characters a path could need escaped.
    let sdk = sdk.replace('\\', "\\\\").replace('"', "\\\"");
    template
        .replace("{{description}}", &description)
        .replace("{{sdk_path}}", &sdk)
        .replace("{{FromType}}", &type_name(from))
        .replace("{{from}}", from)
        .replace("{{Type}}", &type_name(name))
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{name}}", name)
}

/// `gift-card` as a Rust type: `GiftCard`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// Names cargo refuses for a package, or that would shadow a crate every plugin uses.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "proc-macro",
    "sdk",
    "serde",
    "serde-json",
    "sdk-py",
    "sdk-ts",
    "std",
    "target",
    "test",
    "tessera-sdk",
    "testing",
];

/// Rust's keywords, reserved ones included: a crate cannot be named after one.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The longest name accepted: it is also a file name, a stream prefix and a type name.
const MAX_NAME: usize = 64;

/// Checks that `name` is kebab-case (`[a-z][a-z0-9]*` parts joined by single hyphens)
/// and free to use as a crate's name.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid(&format!("use 1 to {MAX_NAME} characters")));
    }
    let kebab = name.split('-').all(|part| {
        part.starts_with(|c: char| c.is_ascii_lowercase())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !kebab {
        return Err(invalid(
            "use kebab-case: lowercase letters and digits in parts that start with a \
             letter, joined by single hyphens (gift-card)",
        ));
    }
    if RESERVED.contains(&name) || KEYWORDS.contains(&name) {
        return Err(invalid("the name is reserved"));
    }
    Ok(())
}

/// A plugins workspace: a `Cargo.toml` that is a workspace and defines `tessera-sdk`
/// as a workspace dependency.
struct PluginsWorkspace {
    manifest: PathBuf,
    document: DocumentMut,
}

impl PluginsWorkspace {
    /// The plugins workspace whose root is `dir`, if it is one.
    fn find(dir: &Path) -> Result<Option<Self>, ScaffoldError> {
        let manifest = dir.join("Cargo.toml");
        let text = match std::fs::read_to_string(&manifest) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(ScaffoldError::Manifest {
                    path: manifest,
                    message: error.to_string(),
                });
            }
        };
        let document: DocumentMut = text.parse().map_err(|error| ScaffoldError::Manifest {
            path: manifest.clone(),
            message: format!("not TOML: {error}"),
        })?;
        let has_sdk = document
            .get("workspace")
            .and_then(|workspace| workspace.get("dependencies"))
            .and_then(|dependencies| dependencies.get("tessera-sdk"))
            .is_some();
        Ok(has_sdk.then_some(PluginsWorkspace { manifest, document }))
    }

    /// Adds the crate folder `name` to the members, unless they already cover it.
    fn join(mut self, name: &str) -> Result<(), ScaffoldError> {
        let manifest = self.manifest.clone();
        let refuse = |message: &str| ScaffoldError::Manifest {
            path: manifest.clone(),
            message: format!(
                "{message}; the crate was written: add \"{name}\" to [workspace] members by hand"
            ),
        };
        let members = self
            .document
            .get_mut("workspace")
            .and_then(|workspace| workspace.get_mut("members"));
        let members = match members {
            None => {
                self.document["workspace"]["members"] = toml_edit::value(toml_edit::Array::new());
                self.document["workspace"]["members"]
                    .as_array_mut()
                    .expect("just made an array")
            }
            Some(item) => item
                .as_array_mut()
                .ok_or_else(|| refuse("[workspace] members is not an array"))?,
        };
        let covered = members
            .iter()
            .filter_map(|member| member.as_str())
            .any(|member| member == name || member == "*");
        if !covered {
            members.push(name);
        }
        let partial = manifest.with_extension("toml.partial");
        std::fs::write(&partial, self.document.to_string())
            .and_then(|()| std::fs::rename(&partial, &manifest))
            .map_err(|error| refuse(&error.to_string()))
    }
}

/// The SDK for a crate outside a plugins workspace: `--sdk`, or the SDK of the
/// checkout this binary was built from, if it is still there.
fn find_sdk(dir: &Path, given: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let candidate = match given {
        Some(path) => path.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk"),
    };
    match candidate.join("Cargo.toml").canonicalize() {
        Ok(manifest) => Ok(manifest
            .parent()
            .expect("a manifest is in a folder")
            .to_path_buf()),
        Err(_) => Err(ScaffoldError::NoSdk {
            dir: dir.to_path_buf(),
            tried: Some(candidate),
        }),
    }
}

/// Formats the written sources with rustfmt, if it is installed, so that the new
/// crate passes `cargo fmt --check` whatever the length of its name. Best effort: the
/// templates are valid Rust unformatted.
fn format_sources(path: &Path) {
    let sources: Vec<PathBuf> = ["src/lib.rs", "src/tests.rs"]
        .iter()
        .map(|file| path.join(file))
        .filter(|file| file.exists())
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&sources)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn io(path: &Path, source: std::io::Error) -> ScaffoldError {
    ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case() {
        for good in ["tally", "gift-card", "v2-orders", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Tally",
            "gift_card",
            "gift--card",
            "-tally",
            "tally-",
            "2fa",
            "gift-2",
            "ä",
            "type",
            "sdk",
            "testing",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let sdk = Path::new("/opt/tessera/plugins/sdk");
        for kind in [Kind::CommandHandler, Kind::Projection, Kind::QueryHandler] {
            let manifests = [MANIFEST_IN_WORKSPACE, MANIFEST_STANDALONE];
            let all = templates(kind)
                .iter()
                .map(|(_, template)| *template)
                .chain(manifests);
            for template in all {
                let text = fill(template, "gift-card", "shop", kind, Some(sdk));
                assert!(!text.contains("{{"), "{kind:?}: {text}");
            }
        }
        let lib = fill(
            templates(Kind::Projection)[0].1,
            "card-totals",
            "gift-card",
            Kind::Projection,
            None,
        );
        assert!(
            lib.contains("GiftCardRecorded") && lib.contains("\"gift-card-\""),
            "{lib}"
        );
        assert!(lib.contains("pub struct CardTotals;"), "{lib}");
        for (lang, kind, files) in generated::TEMPLATES {
            for (file, template) in *files {
                let template = template.replace("{{sdk_path}}", "../sdk-ts");
                let text = fill(&template, "gift-card", "shop", Kind::Projection, None)
                    .replace("{{dir}}", "plugins/gift-card");
                assert!(!text.contains("{{"), "{lang}/{kind}/{file}: {text}");
            }
        }
    }

    #[test]
    fn every_kind_has_a_template_in_every_language() {
        for lang in [Lang::Ts, Lang::Py] {
            for kind in [Kind::CommandHandler, Kind::Projection, Kind::QueryHandler] {
                let files = templates_of(generated::TEMPLATES, lang, kind);
                let files = files.unwrap_or_else(|| panic!("no {lang:?} {kind:?} template"));
                assert!(
                    files.iter().any(|(file, _)| *file == "README.md"),
                    "{lang:?} {kind:?} has no README"
                );
                assert!(check_supported(generated::TEMPLATES, lang, kind).is_ok());
            }
        }
    }

    #[test]
    fn the_templates_fit_together_in_every_language() {
        // What one kind writes and the next reads: the event type and the streams'
        // prefix of a command handler, and the projection's name and table.
        let texts = |lang: Lang, kind: Kind, name: &str, from: &str| -> String {
            let templates: Vec<&str> = match lang {
                Lang::Rust => templates(kind).iter().map(|(_, text)| *text).collect(),
                _ => templates_of(generated::TEMPLATES, lang, kind)
                    .expect("every kind has a template")
                    .iter()
                    .filter(|(file, _)| !file.ends_with(".md"))
                    .map(|(_, text)| *text)
                    .collect(),
            };
            templates
                .iter()
                .map(|text| fill(text, name, from, kind, None))
                .collect()
        };
        for lang in [Lang::Rust, Lang::Ts, Lang::Py] {
            let handler = texts(lang, Kind::CommandHandler, "gift-card", "gift-card");
            assert!(
                handler.contains("GiftCardRecorded")
                    && handler.contains("\"gift-card\"")
                    && handler.contains("record-gift-card"),
                "{lang:?}: {handler}"
            );
            let projection = texts(lang, Kind::Projection, "card-totals", "gift-card");
            assert!(
                projection.contains("GiftCardRecorded")
                    && projection.contains("\"gift-card-\"")
                    && projection.contains("CREATE TABLE totals"),
                "{lang:?}: {projection}"
            );
            let queries = texts(lang, Kind::QueryHandler, "card-queries", "card-totals");
            assert!(
                queries.contains("\"card-totals\"") && queries.contains("FROM totals"),
                "{lang:?}: {queries}"
            );
        }
    }

    #[test]
    fn a_plugin_links_its_languages_sdk() {
        let plugins = tempfile::TempDir::new().expect("a temporary folder");
        let plugins = plugins.path();
        std::fs::create_dir_all(plugins.join("sdk-py/tessera_sdk")).unwrap();
        std::fs::write(plugins.join("sdk-py/tessera_sdk/__init__.py"), "").unwrap();
        std::fs::create_dir_all(plugins.join("sdk-ts")).unwrap();
        std::fs::write(plugins.join("sdk-ts/package.json"), "{}").unwrap();

        // Beside the plugin, the link is relative, so the checkout can move.
        assert_eq!(sdk_link(Lang::Py, plugins, None).unwrap(), "../sdk-py");
        assert_eq!(sdk_link(Lang::Ts, plugins, None).unwrap(), "../sdk-ts");
        // Elsewhere, the SDK given is named by its absolute path.
        let elsewhere = plugins.join("elsewhere");
        let given = plugins.join("sdk-py");
        let absolute = given.canonicalize().unwrap().display().to_string();
        assert_eq!(
            sdk_link(Lang::Py, &elsewhere, Some(&given)).unwrap(),
            absolute
        );
        // Another language's SDK is not taken for this one's.
        let wrong = sdk_link(Lang::Py, &elsewhere, Some(&plugins.join("sdk-ts")))
            .expect_err("the TypeScript SDK taken for the Python one");
        let message = wrong.to_string();
        assert!(
            matches!(wrong, ScaffoldError::NoLangSdk { .. })
                && message.contains("Python")
                && message.contains("plugins/sdk-py"),
            "{message}"
        );

        // A Python command handler's tests import the SDK beside it; a projection links
        // none, so an SDK it would not find does not stop it.
        let request = |kind, name: &str, sdk: Option<PathBuf>| Request {
            kind,
            lang: Lang::Py,
            name: name.into(),
            dir: plugins.to_path_buf(),
            from: None,
            sdk,
        };
        new(&request(Kind::CommandHandler, "gift-card", None)).unwrap();
        let tests = std::fs::read_to_string(plugins.join("gift-card/tests/test_app.py")).unwrap();
        assert!(tests.contains("PLUGIN / \"../sdk-py\""), "{tests}");
        let nowhere = Some(plugins.join("no-sdk-here"));
        new(&request(Kind::Projection, "card-totals", nowhere.clone())).unwrap();
        assert!(plugins.join("card-totals/app.py").is_file());
        let refused = new(&request(Kind::CommandHandler, "other-card", nowhere));
        assert!(
            matches!(refused, Err(ScaffoldError::NoLangSdk { .. })),
            "{refused:?}"
        );
        assert!(!plugins.join("other-card").exists());
    }

    #[test]
    fn a_language_without_the_kind_is_refused_and_nothing_is_written() {
        // A language whose templates cover some kinds only, as a new one starts.
        const PARTIAL: Table = &[
            ("ts", "command-handler", &[("README.md", "# {{name}}\n")]),
            ("py", "projection", &[("README.md", "# {{name}}\n")]),
        ];
        let dir = std::env::temp_dir().join(format!("tessera-scaffold-{}", std::process::id()));
        for (lang, kind, others) in [
            (Lang::Ts, Kind::Projection, "--lang rust or --lang py\n"),
            (Lang::Py, Kind::CommandHandler, "--lang rust or --lang ts\n"),
            (Lang::Ts, Kind::QueryHandler, "--lang rust\n"),
        ] {
            let request = Request {
                kind,
                lang,
                name: "gift-card".into(),
                dir: dir.clone(),
                from: None,
                sdk: None,
            };
            let error = new_from(&request, PARTIAL).expect_err("no template, yet written");
            assert!(
                matches!(error, ScaffoldError::Unsupported { .. }),
                "{error}"
            );
            let message = format!("{error}\n");
            assert!(
                message.contains(lang.title())
                    && message.contains(kind.words())
                    && message.ends_with(others),
                "{message}"
            );
        }
        assert!(!dir.exists());
    }
}
