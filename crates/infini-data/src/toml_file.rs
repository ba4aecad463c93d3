//! Reading TOML config files with one-line errors that name the file, line and key.

use serde::de::DeserializeOwned;
use std::path::Path;

/// Parses `text` (the contents of `path`) as `T`; the error is one line: `path:line: message`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().replace('\n', " ");
        match line {
            Some(line) => {
                // Quote the line, so that errors about a value still name its key.
                let source = text.lines().nth(line - 1).unwrap_or("").trim();
                let source: String = source.chars().take(80).collect();
                if source.is_empty() || message.contains(&source) {
                    format!("{}:{line}: {message}", path.display())
                } else {
                    format!("{}:{line}: {message} (in `{source}`)", path.display())
                }
            }
            None => format!("{}: {message}", path.display()),
        }
    })
}

/// The `[model]` table of a run config, the other tables ignored (`model-info`, benchmarks):
/// `toml_file::read::<ModelTable<ModelConfig>>(path)?.model`.
#[derive(serde::Deserialize)]
pub struct ModelTable<T> {
    /// The `[model]` table.
    pub model: T,
}

/// Reads and parses the TOML file at `path`, with a one-line error if it is missing or malformed.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    parse(path, &text)
}
