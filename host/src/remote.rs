//! The command line's client of a running host: deploy a plugin, list plugins and
//! projection versions. Each call returns the text to show (tables by `comfy-table`),
//! so the binary only prints it; a refusal comes back as an error with the host's own
//! message.

use std::path::Path;

use anyhow::{Context, bail};
use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, Table};
use serde_json::Value;

/// Where the host is and the admin token to send.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The host's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub token: Option<String>,
}

impl Remote {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = reqwest::get(self.url(path))
            .await
            .context("cannot reach the host")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {}", message(&body));
        }
        Ok(body)
    }

    /// Deploys the component in `file` as `name` (by default the file's stem, with
    /// `_` read as `-`). Returns a line saying what now serves.
    pub async fn deploy(&self, file: &Path, name: Option<String>) -> anyhow::Result<String> {
        let name = match name {
            Some(name) => name,
            None => file
                .file_stem()
                .map(|stem| stem.to_string_lossy().replace('_', "-"))
                .context("cannot tell the plugin's name from the file name; pass --name")?,
        };
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut request = reqwest::Client::new()
            .put(self.url(&format!("/plugins/{name}")))
            .header("content-type", "application/wasm")
            .body(bytes);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("cannot reach the host")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("deploy refused ({status}): {}", message(&body));
        }
        Ok(format!(
            "deployed {name} {} (digest {})",
            body["plugin"]["version"].as_str().unwrap_or("?"),
            body["digest"].as_str().unwrap_or("?")
        ))
    }

    /// The plugins the host serves, as a table (with each one's last error below it).
    pub async fn plugins(&self) -> anyhow::Result<String> {
        let body = self.get("/plugins").await?;
        let mut table = table([
            "NAME", "KIND", "VERSION", "CONTRACT", "STATUS", "DIGEST", "FILE",
        ]);
        let mut errors = Vec::new();
        for entry in body["plugins"].as_array().into_iter().flatten() {
            let digest = text(&entry["digest"]);
            let name = text(&entry["plugin"]["name"]);
            if let Some(error) = entry["last_error"].as_str() {
                errors.push(format!("{name}: {error}"));
            }
            table.add_row([
                name,
                text(&entry["plugin"]["kind"]),
                text(&entry["plugin"]["version"]),
                text(&entry["plugin"]["contract"]),
                text(&entry["status"]),
                digest[..digest.len().min(12)].to_string(),
                text(&entry["file"]),
            ]);
        }
        Ok(with_notes(table, "last error", &errors))
    }

    /// Every projection version with its role, status and catch-up progress.
    pub async fn projections(&self) -> anyhow::Result<String> {
        let body = self.get("/projections").await?;
        let mut table = table([
            "NAME", "VERSION", "ROLE", "STATUS", "PROGRESS", "TO GO", "EV/S", "ETA",
        ]);
        for column in 5..8 {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut errors = Vec::new();
        for p in body["projections"].as_array().into_iter().flatten() {
            let name = text(&p["name"]);
            let done = p["progress"]["events_done"].as_u64().unwrap_or(0);
            let to_go = p["progress"]["events_to_go"].as_u64().unwrap_or(0);
            let eta = p["progress"]["eta_seconds"]
                .as_f64()
                .map_or("-".to_string(), |s| format!("{s:.0}s"));
            if let Some(error) = p["error"].as_str() {
                errors.push(format!("{name} v{}: {error}", p["version"]));
            }
            table.add_row(vec![
                Cell::new(name),
                Cell::new(format!("v{}.g{}", p["version"], p["generation"])),
                Cell::new(text(&p["role"])),
                Cell::new(text(&p["status"])),
                Cell::new(progress_bar(done, to_go)),
                Cell::new(to_go),
                Cell::new(format!(
                    "{:.0}",
                    p["progress"]["events_per_second"].as_f64().unwrap_or(0.0)
                )),
                Cell::new(eta),
            ]);
        }
        Ok(with_notes(table, "error", &errors))
    }
}

fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(header);
    // Flush left, two spaces between columns: what scripts and people expect of a CLI.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

fn with_notes(table: Table, label: &str, notes: &[String]) -> String {
    let mut text: String = table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    for note in notes {
        text.push_str(&format!("\n{label}: {note}"));
    }
    text
}

/// `[#######---------]  44%`: how much of a catch-up is done.
fn progress_bar(done: u64, to_go: u64) -> String {
    let total = done + to_go;
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = (fraction * 16.0).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(16 - filled),
        fraction * 100.0
    )
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

fn message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or("no reason given")
}

#[cfg(test)]
mod tests {
    use super::progress_bar;

    #[test]
    fn progress_bar_shows_the_fraction_done() {
        assert_eq!(progress_bar(0, 0), "[################] 100%");
        assert_eq!(progress_bar(1, 3), "[####------------]  25%");
    }
}
