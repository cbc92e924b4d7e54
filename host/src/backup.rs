//! Online backups: a consistent copy of a running host's data folder.
//!
//! [`run`] copies the event log and every read-model database with SQLite's online
//! backup API while commands keep arriving, plus the projections' lifecycle, the
//! plugin archive and the plugins folder, into a destination laid out so that
//! `tessera serve --data DEST/data --plugins DEST/plugins` starts on it.
//!
//! Guarantees:
//! - Each database is copied from one snapshot: the copy holds a read transaction on
//!   the source across all of its steps (in WAL mode a reader never blocks the writer,
//!   and no commit restarts the copy), so the copy is a state the database was in.
//! - The read models are copied before the log, and the log only grows, so no copied
//!   read model's checkpoint is ahead of the copied log: a host started on the copy
//!   catches its projections up from their checkpoints to the copy's position.
//!   [`run`] checks this before it reports success.
//! - The report's `position` is the last event the copied log holds.
//! - A failed backup removes what it wrote.
//!
//! The compiled-code cache is not copied (it is rebuilt on demand). This module knows
//! nothing of HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// Pages copied per step (4 MiB at SQLite's default page size): between steps the
/// thread yields, so a backup shares the machine with the host's work.
const PAGES_PER_STEP: std::ffi::c_int = 1024;
/// How long a step waits on a lock (it should not: the source is only read) before
/// the backup fails.
const MAX_LOCKED: Duration = Duration::from_secs(10);

/// What a backup wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupReport {
    /// The position of the last event the copied log holds.
    pub position: u64,
    /// The destination folder.
    #[schema(value_type = String)]
    pub dest: PathBuf,
    /// Serve the copy with `tessera serve --data <data_dir> --plugins <plugins_dir>`.
    #[schema(value_type = String)]
    pub data_dir: PathBuf,
    #[schema(value_type = String)]
    pub plugins_dir: PathBuf,
    /// Every file written, relative to `dest`.
    pub files: Vec<BackedUpFile>,
    /// When the backup started and finished, RFC 3339 in UTC.
    pub started_at: String,
    pub finished_at: String,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackedUpFile {
    /// Relative to the destination, e.g. `data/events.db`.
    pub path: String,
    pub bytes: u64,
    /// For a read-model database: the position its copy has applied up to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination cannot be used (not absolute, not empty, not a folder): the
    /// caller picks another one.
    #[error("{0}")]
    Destination(String),
    /// Reading the source or writing the copy failed; nothing usable was left. Report
    /// it; retrying may help (a full disk, a permission).
    #[error("cannot copy {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The event log is not in the data folder but in PostgreSQL, which this copy
    /// cannot take consistently with the read models: back the database up with
    /// PostgreSQL's own tools (`pg_dump`), and rebuild read models from it.
    #[error(
        "the event log is in PostgreSQL, not in the data folder: back it up with pg_dump (docs/postgres.md); a host's read models are rebuilt from the log"
    )]
    LogInPostgres,
    /// A copied read model is ahead of the copied log; the copy was removed. A bug:
    /// report it.
    #[error("the copy of {path} is at position {checkpoint}, past the copied log's {position}")]
    Inconsistent {
        path: String,
        checkpoint: u64,
        position: u64,
    },
}

/// Copies the data folder `data_dir` of a running host and its `plugins_dir` into
/// `dest`, which must be an absolute path to a folder that is missing or empty.
/// Blocks: run it on a blocking thread.
pub fn run(data_dir: &Path, plugins_dir: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    let started_at = jiff::Timestamp::now().to_string();
    prepare_destination(dest)?;
    let mut written = Written {
        dest: dest.to_path_buf(),
        files: Vec::new(),
    };
    match copy_all(data_dir, plugins_dir, &mut written) {
        Ok(position) => {
            let report = BackupReport {
                position,
                dest: dest.to_path_buf(),
                data_dir: dest.join("data"),
                plugins_dir: dest.join("plugins"),
                files: written.files,
                started_at,
                finished_at: jiff::Timestamp::now().to_string(),
            };
            let manifest = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other);
            manifest
                .and_then(|json| std::fs::write(dest.join("backup.json"), json))
                .map_err(|source| BackupError::Io {
                    path: dest.join("backup.json"),
                    source,
                })?;
            Ok(report)
        }
        Err(error) => {
            // Only what this backup created: the destination was empty.
            for name in ["data", "plugins", "backup.json"] {
                let path = dest.join(name);
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
            Err(error)
        }
    }
}

/// The files written so far.
struct Written {
    dest: PathBuf,
    files: Vec<BackedUpFile>,
}

impl Written {
    fn note(&mut self, path: &Path, checkpoint: Option<u64>) {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let relative = path.strip_prefix(&self.dest).unwrap_or(path);
        self.files.push(BackedUpFile {
            path: relative.to_string_lossy().into_owned(),
            bytes,
            checkpoint,
        });
    }
}

fn prepare_destination(dest: &Path) -> Result<(), BackupError> {
    if !dest.is_absolute() {
        return Err(BackupError::Destination(format!(
            "dest must be an absolute path on the host, not {}",
            dest.display()
        )));
    }
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Destination(format!(
                    "{} is not empty; back up into a new or empty folder",
                    dest.display()
                )));
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(BackupError::Destination(format!(
                "{} is a file, not a folder",
                dest.display()
            )));
        }
        Err(error) => {
            return Err(BackupError::Destination(format!(
                "{} cannot be used: {error}",
                dest.display()
            )));
        }
    }
    std::fs::create_dir_all(dest).map_err(|error| {
        BackupError::Destination(format!("{} cannot be created: {error}", dest.display()))
    })
}

/// Copies everything; returns the copied log's position.
fn copy_all(
    data_dir: &Path,
    plugins_dir: &Path,
    written: &mut Written,
) -> Result<u64, BackupError> {
    let data_out = written.dest.join("data");
    let plugins_out = written.dest.join("plugins");
    create_dir(&data_out)?;
    create_dir(&plugins_out)?;

    // The lifecycle first: the databases copied next are at least as new as the
    // versions it names (a version it does not name yet is built on the copy).
    let projections = data_dir.join("projections");
    let projections_out = data_out.join("projections");
    create_dir(&projections_out)?;
    copy_file_if_present(
        &projections.join("lifecycle.json"),
        &projections_out.join("lifecycle.json"),
        written,
    )?;

    // The read models before the log, so that none is ahead of the copied log.
    let mut checkpoints = Vec::new();
    for (source, relative) in projection_databases(&projections)? {
        let target = projections_out.join(&relative);
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        let Some(checkpoint) = copy_database(&source, &target, checkpoint)? else {
            // Deleted meanwhile (a retired version): nothing to copy.
            continue;
        };
        written.note(&target, Some(checkpoint));
        checkpoints.push((written.files.len() - 1, checkpoint));
    }

    // The plugin archive (what rollback and archived projection code load from).
    // Its files are written once by digest or replaced atomically, so a plain copy
    // reads each whole.
    let archive = data_dir.join("plugins").join("archive");
    if archive.is_dir() {
        let archive_out = data_out.join("plugins").join("archive");
        create_dir(&archive_out)?;
        for file in files_in(&archive)? {
            if let Some(name) = file.file_name() {
                copy_file_if_present(&file, &archive_out.join(name), written)?;
            }
        }
    }
    // The plugins folder, so that the copy serves what the host served.
    for file in files_in(plugins_dir)? {
        if file.extension().is_some_and(|ext| ext == "wasm")
            && let Some(name) = file.file_name()
        {
            copy_file_if_present(&file, &plugins_out.join(name), written)?;
        }
    }

    // The log last.
    let events = data_dir.join("events.db");
    let events_out = data_out.join("events.db");
    let position = copy_database(&events, &events_out, head)?.ok_or_else(|| BackupError::Io {
        path: events.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no event log"),
    })?;
    written.note(&events_out, None);

    for (index, checkpoint) in checkpoints {
        if checkpoint > position {
            return Err(BackupError::Inconsistent {
                path: written.files[index].path.clone(),
                checkpoint,
                position,
            });
        }
    }
    Ok(position)
}

/// The position a read model has applied up to (the host's own table in it). A
/// database the host is still creating (the file is there, its tables not yet) has
/// applied nothing: its copy is set up and caught up by a host started on it, as
/// after a crash at that moment.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    let set_up: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = '_tessera_checkpoint')",
        [],
        |r| r.get(0),
    )?;
    if !set_up {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE((SELECT position FROM main._tessera_checkpoint WHERE id = 1), 0)",
        [],
        |r| r.get(0),
    )
}

/// The last position of the log.
fn head(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(position), 0) FROM main.events",
        [],
        |r| r.get(0),
    )
}

/// Every read-model database: `<root>/<projection>/<version>.db`, with its path
/// relative to `root`.
fn projection_databases(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>, BackupError> {
    let mut found = Vec::new();
    if !root.is_dir() {
        return Ok(found);
    }
    for folder in read_dir(root)? {
        if !folder.is_dir() {
            continue;
        }
        for file in files_in(&folder)? {
            if file.extension().is_some_and(|ext| ext == "db")
                && let (Some(projection), Some(name)) = (folder.file_name(), file.file_name())
            {
                found.push((file.clone(), Path::new(projection).join(name)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Copies the database at `source` into a new file `target` from one snapshot, and
/// answers `query` (a single integer) from that same snapshot. None if `source` does
/// not exist.
fn copy_database(
    source: &Path,
    target: &Path,
    query: fn(&Connection) -> rusqlite::Result<i64>,
) -> Result<Option<u64>, BackupError> {
    if !source.exists() {
        return Ok(None);
    }
    let failed = |error: rusqlite::Error| BackupError::Database {
        path: source.to_path_buf(),
        source: error,
    };
    // Read-write without create (a read-only connection cannot make the WAL index of
    // a database nobody has open), but it only ever reads.
    let from = match Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(from) => from,
        // Removed between the listing and the open.
        Err(_) if !source.exists() => return Ok(None),
        Err(error) => return Err(failed(error)),
    };
    from.busy_timeout(MAX_LOCKED).map_err(failed)?;
    from.pragma_update(None, "query_only", true)
        .map_err(failed)?;
    // One read transaction across every step: each step copies from the same
    // snapshot, and commits made meanwhile (by the host's own connections) neither
    // restart the copy nor wait for it.
    from.execute_batch("BEGIN DEFERRED").map_err(failed)?;
    let answer = query(&from).map_err(failed)?;
    let mut to = Connection::open(target).map_err(|error| BackupError::Database {
        path: target.to_path_buf(),
        source: error,
    })?;
    {
        let backup = Backup::new(&from, &mut to).map_err(failed)?;
        let mut locked_since = None;
        loop {
            match backup.step(PAGES_PER_STEP).map_err(failed)? {
                StepResult::Done => break,
                StepResult::More => std::thread::yield_now(),
                StepResult::Busy | StepResult::Locked => {
                    let since = *locked_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > MAX_LOCKED {
                        return Err(failed(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the database stayed locked during the backup".into()),
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // A result added in a later version: a failure rather than a loop.
                _ => {
                    return Err(failed(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                        Some("unexpected backup step result".into()),
                    )));
                }
            }
        }
    }
    from.execute_batch("COMMIT").map_err(failed)?;
    // Closing the copy makes it one self-contained file (no write-ahead log beside it).
    to.close().map_err(|(_, error)| BackupError::Database {
        path: target.to_path_buf(),
        source: error,
    })?;
    Ok(Some(u64::try_from(answer).unwrap_or(0)))
}

fn copy_file_if_present(
    source: &Path,
    target: &Path,
    written: &mut Written,
) -> Result<(), BackupError> {
    match std::fs::copy(source, target) {
        Ok(_) => {
            written.note(target, None);
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source_error) => Err(BackupError::Io {
            path: source.to_path_buf(),
            source: source_error,
        }),
    }
}

fn create_dir(path: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(path).map_err(|source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let io = |source| BackupError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                paths.push(entry.map_err(io)?.path());
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    paths.sort();
    Ok(paths)
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    Ok(read_dir(dir)?.into_iter().filter(|p| p.is_file()).collect())
}

/// Asks the host at `url` for a backup into `dest` (a path on the host's machine);
/// returns a summary to print. The command line's `tessera backup`.
pub async fn request(url: &str, token: Option<&str>, dest: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let mut request = reqwest::Client::new()
        .post(format!("{}/admin/backup", url.trim_end_matches('/')))
        .json(&serde_json::json!({ "dest": dest }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.context("cannot reach the host")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "backup refused ({status}): {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    let files = body["files"].as_array().map_or(0, Vec::len);
    let bytes: u64 = body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["bytes"].as_u64())
        .sum();
    Ok(format!(
        "backed up to {} at position {} ({files} files, {bytes} bytes)\nserve it with: tessera serve --data {} --plugins {}",
        body["dest"].as_str().unwrap_or("?"),
        body["position"],
        body["data_dir"].as_str().unwrap_or("?"),
        body["plugins_dir"].as_str().unwrap_or("?"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read model the host is still creating (its file there, its tables not yet)
    /// is copied as one that has applied nothing, not a failed backup.
    #[test]
    fn a_read_model_still_being_created_is_copied_at_position_zero() {
        let source = tempfile::TempDir::new().unwrap();
        let data = source.path().join("data");
        let projection = data.join("projections").join("balances");
        std::fs::create_dir_all(&projection).unwrap();
        let log = Connection::open(data.join("events.db")).unwrap();
        log.execute_batch("CREATE TABLE events (position INTEGER PRIMARY KEY); INSERT INTO events VALUES (1), (2);")
            .unwrap();
        drop(log);
        std::fs::write(projection.join("v1.g1.db"), b"").unwrap();
        let plugins = source.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();

        let dest = tempfile::TempDir::new().unwrap();
        let report = run(&data, &plugins, dest.path()).unwrap();
        assert_eq!(report.position, 2);
        let copied = report
            .files
            .iter()
            .find(|file| file.path.ends_with("v1.g1.db"))
            .expect("the read model is copied");
        assert_eq!(copied.checkpoint, Some(0));
    }
}
