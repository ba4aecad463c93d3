//! Dataset cards (`datasets/*.toml`): what a corpus is, where it lives, its layout and licence.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::corpus::{Corpus, Format};
use crate::error::{Context, Result, fail};

/// A dataset card.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCard {
    /// Short name.
    pub name: String,
    /// What the corpus is.
    pub description: String,
    /// Layout on disk.
    pub format: String,
    /// Folder holding the corpus, relative to the card's folder unless absolute.
    pub path: String,
    /// For proof-pile: keep rows whose `meta.config` equals this.
    #[serde(default)]
    pub config_filter: Option<String>,
    /// Licence of the texts.
    pub license: String,
    /// Where the texts come from.
    pub source: String,
    /// How to obtain the corpus (a command or instructions).
    pub obtain: String,
    /// For `format = "synthetic"`: what to generate.
    #[serde(default)]
    pub synthetic: Option<crate::synthetic::SyntheticSpec>,
}

impl DatasetCard {
    /// Reads a card.
    pub fn load(path: &Path) -> Result<DatasetCard> {
        let text = std::fs::read_to_string(path).context(|| format!("cannot read dataset card {}", path.display()))?;
        crate::toml_file::parse(path, &text).map_err(crate::error::DataError)
    }

    /// The corpus folder, resolved against the card's location.
    pub fn root(&self, card_path: &Path) -> PathBuf {
        let p = Path::new(&self.path);
        if p.is_absolute() { p.to_path_buf() } else { card_path.parent().unwrap_or(Path::new(".")).join(p) }
    }
}

/// Guesses a folder's layout: `metadata.csv` → pg19; jsonl(.gz) files in `train/` → proof-pile; else text.
pub fn detect_format(root: &Path) -> Format {
    if root.join("metadata.csv").is_file() {
        return Format::Pg19;
    }
    let jsonl = std::fs::read_dir(root.join("train")).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(".jsonl.gz") || name.ends_with(".jsonl")
    });
    if jsonl { Format::ProofPile } else { Format::Text }
}

/// Opens the corpus named on the command line: a dataset card (`.toml`) or a folder, with an
/// optional explicit format (`--format`) and `meta.config` filter.
pub fn open_dataset(dataset: &Path, format: Option<&str>, config_filter: Option<String>) -> Result<Corpus> {
    if dataset.extension().is_some_and(|e| e == "toml") {
        let card = DatasetCard::load(dataset)?;
        let root = card.root(dataset);
        if !root.is_dir() && card.format != "synthetic" {
            return fail(format!(
                "dataset `{}` is not at {} (from {}); to get it: {}",
                card.name,
                root.display(),
                dataset.display(),
                card.obtain
            ));
        }
        let format = Format::parse(format.unwrap_or(&card.format))?;
        if format == Format::Synthetic {
            let Some(spec) = card.synthetic else {
                return fail(format!("{}: format \"synthetic\" needs a [synthetic] table (task, min_tokens, max_tokens, ...)", dataset.display()));
            };
            let corpus = Corpus::synthetic(dataset, spec).map_err(|e| crate::error::DataError(format!("{}: {e}", dataset.display())))?;
            if let Some(filler) = corpus.filler_root().filter(|f| !f.is_dir()) {
                return fail(format!(
                    "dataset `{}` takes its filler text from {}, which is not there (from {}); to get it: {}",
                    card.name,
                    filler.display(),
                    dataset.display(),
                    card.obtain
                ));
            }
            return Ok(corpus);
        }
        if card.synthetic.is_some() {
            return fail(format!("{}: a [synthetic] table needs format = \"synthetic\"", dataset.display()));
        }
        return Corpus::open(root, format, config_filter.or(card.config_filter));
    }
    if !dataset.is_dir() {
        return fail(format!("--dataset {}: no such folder or dataset card (.toml)", dataset.display()));
    }
    let format = match format {
        Some(f) => Format::parse(f)?,
        None => detect_format(dataset),
    };
    Corpus::open(dataset, format, config_filter)
}
