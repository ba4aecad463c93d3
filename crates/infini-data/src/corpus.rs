//! Streaming readers for the corpora the paper uses, in their published layouts.
//!
//! - PG19: `metadata.csv` (no header: book_id, short_book_title, publication_date, url) and
//!   `train/ validation/ test/<book_id>.txt`; one document per book.
//! - proof-pile: `train/ dev/ test/*.jsonl.gz` (or `.jsonl`), rows `{"text": …, "meta": {"config": …}}`;
//!   one document per row, optionally only rows whose `meta.config` matches (e.g. `arxiv`).
//! - text: a folder of `.txt` files (searched recursively), one document per file, split by a
//!   deterministic hash of the file name unless the folder has `train/ validation/ test/`.
//!
//! Documents are produced one at a time; a corpus is never held in memory whole.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, fail};

/// One of the three splits every corpus has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training documents.
    Train,
    /// Held-out documents for validation during training (`dev/` in proof-pile).
    Validation,
    /// Held-out documents for final evaluation.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The split's name as used on the command line and in prepared data.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    /// Parses `train`, `validation` (or `valid`, `dev`) and `test`.
    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "validation" | "valid" | "dev" => Ok(Split::Validation),
            "test" => Ok(Split::Test),
            other => fail(format!("unknown split `{other}`: use train, validation or test")),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The on-disk layout of a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// PG19 books.
    Pg19,
    /// proof-pile jsonl.gz rows.
    ProofPile,
    /// A folder of `.txt` files.
    Text,
    /// Generated long-range tasks (a dataset card's `[synthetic]` table; see [`crate::synthetic`]).
    Synthetic,
}

impl Format {
    /// Parses `pg19`, `proof-pile` or `text`.
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "pg19" => Ok(Format::Pg19),
            "proof-pile" | "proofpile" => Ok(Format::ProofPile),
            "text" => Ok(Format::Text),
            "synthetic" => Ok(Format::Synthetic),
            other => fail(format!("unknown corpus format `{other}`: use pg19, proof-pile, text or synthetic")),
        }
    }
}

/// One document of a corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Stable identifier (book id, `file:line`, or relative path).
    pub id: String,
    /// Human-readable title.
    pub title: String,
    /// The full text.
    pub text: String,
    /// Pieces of the text, each tokenized on its own, and which are answers (synthetic tasks);
    /// empty: the whole text is one piece and nothing is an answer.
    pub spans: Vec<Span>,
}

/// One piece of a [`Document`]: it ends at byte `end` (and starts where the previous ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the piece's end in the text.
    pub end: usize,
    /// Whether the piece is an answer (the target of `data.loss_on = "answers"`).
    pub answer: bool,
}

/// A corpus on disk: where it is, its layout, and an optional proof-pile `meta.config` filter.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// Root folder.
    pub root: PathBuf,
    /// Layout.
    pub format: Format,
    /// For proof-pile: keep only rows whose `meta.config` equals this.
    pub config_filter: Option<String>,
    /// For synthetic corpora: what to generate.
    pub synthetic: Option<crate::synthetic::SyntheticSpec>,
}

/// A boxed stream of documents.
pub type Documents = Box<dyn Iterator<Item = Result<Document>> + Send>;

impl Corpus {
    /// Opens a corpus, checking that its root and split folders exist.
    pub fn open(root: impl Into<PathBuf>, format: Format, config_filter: Option<String>) -> Result<Corpus> {
        let root = root.into();
        if !root.is_dir() {
            return fail(format!("corpus folder {} does not exist or is not a folder", root.display()));
        }
        let root = fs::canonicalize(&root).context(|| format!("cannot resolve {}", root.display()))?;
        let corpus = Corpus { root, format, config_filter, synthetic: None };
        if !matches!(format, Format::Text | Format::Synthetic) {
            for split in Split::ALL {
                let dir = corpus.split_dir(split);
                if !dir.is_dir() {
                    return fail(format!(
                        "{} corpus {} has no {}/ folder (expected train/, {}/ and test/)",
                        corpus.format_name(),
                        corpus.root.display(),
                        dir.file_name().unwrap().to_string_lossy(),
                        corpus.split_dir(Split::Validation).file_name().unwrap().to_string_lossy()
                    ));
                }
            }
        }
        Ok(corpus)
    }

    fn format_name(&self) -> &'static str {
        match self.format {
            Format::Pg19 => "pg19",
            Format::ProofPile => "proof-pile",
            Format::Text => "text",
            Format::Synthetic => "synthetic",
        }
    }

    fn split_dir(&self, split: Split) -> PathBuf {
        match (self.format, split) {
            (Format::ProofPile, Split::Validation) => self.root.join("dev"),
            _ => self.root.join(split.name()),
        }
    }

    /// A synthetic corpus generated from `spec` (no files; `root` only names it).
    pub fn synthetic(root: impl Into<PathBuf>, spec: crate::synthetic::SyntheticSpec) -> Result<Corpus> {
        spec.validate()?;
        Ok(Corpus { root: root.into(), format: Format::Synthetic, config_filter: None, synthetic: Some(spec) })
    }

    /// The documents of `split`, in a deterministic order, read lazily. Synthetic documents are
    /// sized with an estimate of their token counts; see [`Self::documents_sized`].
    pub fn documents(&self, split: Split) -> Result<Documents> {
        self.documents_sized(split, &crate::synthetic::estimate_tokens)
    }

    /// [`Self::documents`], with `count` giving a text's length in tokens (synthetic corpora
    /// choose their lengths in tokens of the tokenizer that prepares them).
    pub fn documents_sized(&self, split: Split, count: &dyn Fn(&str) -> usize) -> Result<Documents> {
        match self.format {
            Format::Synthetic => {
                let Some(spec) = &self.synthetic else {
                    return fail("format synthetic needs a dataset card with a [synthetic] table (see datasets/passkey.toml)");
                };
                let filler = match self.filler_corpus()? {
                    Some(corpus) => Some(corpus.split_text(split)?),
                    None => None,
                };
                Ok(Box::new(spec.documents_with(split, count, filler.as_deref()).into_iter().map(Ok)))
            }
            Format::Pg19 => pg19_documents(self, split),
            Format::ProofPile => proof_pile_documents(self, split),
            Format::Text => text_documents(self, split),
        }
    }

    /// The files that make up `split` (for progress totals and fingerprints).
    pub fn files(&self, split: Split) -> Result<Vec<PathBuf>> {
        match self.format {
            Format::Pg19 => Ok(pg19_books(self, split, &pg19_metadata(&self.root)?)?.into_iter().map(|(_, p)| p).collect()),
            Format::ProofPile => proof_pile_files(&self.split_dir(split)),
            Format::Text => Ok(text_split(&self.root)?.remove(&split).unwrap_or_default()),
            Format::Synthetic => match self.filler_corpus()? {
                Some(corpus) => corpus.files(split),
                None => Ok(Vec::new()),
            },
        }
    }

    /// Where a synthetic corpus's `filler` corpus is (its folder relative to the dataset card;
    /// an absolute path stays as it is), if it has one.
    pub(crate) fn filler_root(&self) -> Option<PathBuf> {
        let path = self.synthetic.as_ref()?.filler.as_deref()?;
        Some(self.root.parent().unwrap_or(Path::new(".")).join(path))
    }

    /// A synthetic corpus's `filler` corpus, if any.
    fn filler_corpus(&self) -> Result<Option<Corpus>> {
        let Some(root) = self.filler_root() else {
            return Ok(None);
        };
        let corpus = Corpus::open(&root, crate::card::detect_format(&root), None)
            .map_err(|e| crate::error::DataError(format!("synthetic.filler: {e}")))?;
        Ok(Some(corpus))
    }

    /// The whole text of `split`, documents separated by blank lines (a synthetic corpus's filler).
    fn split_text(&self, split: Split) -> Result<String> {
        let mut text = String::new();
        for doc in self.documents(split)? {
            text += doc?.text.trim();
            text += "\n\n";
        }
        if text.trim().is_empty() {
            return fail(format!("synthetic.filler: the {split} split of {} has no text", self.root.display()));
        }
        Ok(text)
    }
}

/// Reads a whole file as UTF-8, with a one-line error naming it.
fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        crate::error::DataError(format!(
            "{}: not valid UTF-8 at byte {}; convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// PG19

/// Parses `metadata.csv` into book_id → title, with one-line errors naming the line.
fn pg19_metadata(root: &Path) -> Result<HashMap<String, String>> {
    let path = root.join("metadata.csv");
    let file = fs::File::open(&path).context(|| format!("cannot open {} (PG19 needs it)", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(file);
    let mut titles = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let record = record.context(|| format!("{}:{line}", path.display()))?;
        if record.len() != 4 {
            return fail(format!(
                "{}:{line}: expected 4 fields (book_id, short_book_title, publication_date, url), got {}",
                path.display(),
                record.len()
            ));
        }
        let id = record[0].trim();
        if id.is_empty() {
            return fail(format!("{}:{line}: empty book_id", path.display()));
        }
        titles.insert(id.to_string(), record[1].trim().to_string());
    }
    if titles.is_empty() {
        return fail(format!("{} lists no books", path.display()));
    }
    Ok(titles)
}

/// `<book_id>.txt` files of a split folder, sorted by id (numerically where ids are numbers).
fn list_books(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut books = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.context(|| format!("cannot list {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let id = path.file_stem().unwrap().to_string_lossy().into_owned();
            books.push((id, path));
        }
    }
    books.sort_by(|a, b| natural_key(&a.0).cmp(&natural_key(&b.0)));
    Ok(books)
}

fn natural_key(id: &str) -> (u64, String) {
    (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string())
}

/// The books of a split with their paths, after checking them against metadata.csv.
fn pg19_books(corpus: &Corpus, split: Split, titles: &HashMap<String, String>) -> Result<Vec<(String, PathBuf)>> {
    let mut present = HashMap::new();
    for s in Split::ALL {
        for (id, path) in list_books(&corpus.split_dir(s))? {
            if !titles.contains_key(&id) {
                return fail(format!("{}: book {id} is not listed in metadata.csv", path.display()));
            }
            present.insert(id, s);
        }
    }
    let mut missing: Vec<&String> = titles.keys().filter(|id| !present.contains_key(*id)).collect();
    if !missing.is_empty() {
        missing.sort();
        return fail(format!(
            "{}: {} book(s) listed but absent from train/, validation/ and test/ (first: {}.txt)",
            corpus.root.join("metadata.csv").display(),
            missing.len(),
            missing[0]
        ));
    }
    list_books(&corpus.split_dir(split))
}

fn pg19_documents(corpus: &Corpus, split: Split) -> Result<Documents> {
    let titles = pg19_metadata(&corpus.root)?;
    let books = pg19_books(corpus, split, &titles)?;
    Ok(Box::new(books.into_iter().map(move |(id, path)| {
        let text = read_text(&path)?;
        let title = titles.get(&id).cloned().unwrap_or_else(|| id.clone());
        Ok(Document { id, title, text, spans: Vec::new() })
    })))
}

// ---------------------------------------------------------------------------------------------
// proof-pile

fn proof_pile_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.context(|| format!("cannot list {}", dir.display()))?.path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.ends_with(".jsonl.gz") || name.ends_with(".jsonl") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Deserialize)]
struct ProofPileRow {
    text: String,
    #[serde(default)]
    meta: serde_json::Value,
}

/// Lines of one jsonl(.gz) file, with the file name and line number for errors.
struct JsonlRows {
    path: PathBuf,
    lines: std::io::Lines<BufReader<Box<dyn Read + Send>>>,
    line: usize,
}

impl JsonlRows {
    fn open(path: PathBuf) -> Result<Self> {
        let file = fs::File::open(&path).context(|| format!("cannot open {}", path.display()))?;
        let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(Self { path, lines: BufReader::with_capacity(1 << 20, reader).lines(), line: 0 })
    }
}

impl Iterator for JsonlRows {
    type Item = Result<(String, ProofPileRow)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line += 1;
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    let what = if self.path.extension().is_some_and(|e| e == "gz") {
                        "not a valid gzip stream or not UTF-8"
                    } else {
                        "unreadable or not UTF-8"
                    };
                    return Some(fail(format!("{}:{}: {what}: {e}", self.path.display(), self.line)));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let id = format!("{}:{}", self.path.file_name().unwrap().to_string_lossy(), self.line);
            return Some(match serde_json::from_str::<ProofPileRow>(&line) {
                Ok(row) => Ok((id, row)),
                Err(e) => fail(format!(
                    "{}:{}: invalid JSON row (expected {{\"text\": …, \"meta\": …}}): {e}",
                    self.path.display(),
                    self.line
                )),
            });
        }
    }
}

fn proof_pile_documents(corpus: &Corpus, split: Split) -> Result<Documents> {
    let files = proof_pile_files(&corpus.split_dir(split))?;
    let filter = corpus.config_filter.clone();
    let rows = files.into_iter().flat_map(|path| match JsonlRows::open(path) {
        Ok(rows) => Box::new(rows) as Box<dyn Iterator<Item = _> + Send>,
        Err(e) => Box::new(std::iter::once(Err(e))),
    });
    Ok(Box::new(rows.filter_map(move |row| {
        let (id, row): (String, ProofPileRow) = match row {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let config = row.meta.get("config").and_then(|c| c.as_str());
        if let Some(want) = &filter
            && config != Some(want.as_str())
        {
            return None;
        }
        let title = row
            .meta
            .get("title")
            .or_else(|| row.meta.get("source"))
            .and_then(|t| t.as_str())
            .map_or_else(|| id.clone(), str::to_string);
        Some(Ok(Document { id, title, text: row.text, spans: Vec::new() }))
    })))
}

// ---------------------------------------------------------------------------------------------
// plain text folders

fn collect_txt(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.context(|| format!("cannot list {}", dir.display()))?.path();
        if path.is_dir() {
            collect_txt(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "txt") {
            out.push(path);
        }
    }
    Ok(())
}

/// FNV-1a: a hash that never changes between Rust versions or runs.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Assigns the `.txt` files under `root` to splits: by `train/ validation/ test/` folders if
/// present, else 5% validation and 5% test (at least one each from 3 files up) by name hash.
fn text_split(root: &Path) -> Result<BTreeMap<Split, Vec<PathBuf>>> {
    let mut map = BTreeMap::new();
    if Split::ALL.iter().all(|s| root.join(s.name()).is_dir()) {
        for s in Split::ALL {
            let mut files = Vec::new();
            collect_txt(&root.join(s.name()), &mut files)?;
            files.sort();
            map.insert(s, files);
        }
        return Ok(map);
    }
    let mut files = Vec::new();
    collect_txt(root, &mut files)?;
    let key = |p: &PathBuf| stable_hash(p.strip_prefix(root).unwrap_or(p).to_string_lossy().as_bytes());
    files.sort_by_key(|p| (key(p), p.clone()));
    let n = files.len();
    let held = if n >= 3 { (n / 20).max(1) } else { 0 };
    let mut rest = files.split_off(2 * held);
    let test = files.split_off(held);
    rest.sort();
    let (mut validation, mut test) = (files, test);
    validation.sort();
    test.sort();
    map.insert(Split::Train, rest);
    map.insert(Split::Validation, validation);
    map.insert(Split::Test, test);
    Ok(map)
}

fn text_documents(corpus: &Corpus, split: Split) -> Result<Documents> {
    let files = text_split(&corpus.root)?.remove(&split).unwrap_or_default();
    let root = corpus.root.clone();
    Ok(Box::new(files.into_iter().map(move |path| {
        let text = read_text(&path)?;
        let id = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().into_owned();
        let title = path.file_stem().unwrap().to_string_lossy().into_owned();
        Ok(Document { id, title, text, spans: Vec::new() })
    })))
}
