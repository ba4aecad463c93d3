//! Pre-tokenized data: flat little-endian token shards plus a JSON index of documents.
//!
//! ```text
//! OUT/manifest.json            written last: its presence means the data is complete
//! OUT/tokenizer.json           a copy of the tokenizer used
//! OUT/<split>/00000.bin        tokens of whole documents, u16 (vocab ≤ 65536) or u32
//! OUT/<split>/00000.idx.json   the shard's SHA-256 and its documents: id, title, offset, len, bytes, words
//! OUT/prepare.json             while preparing: what is being prepared (to resume after a kill)
//! ```
//! Every file is written atomically, the index after its shard, so a shard counts only once its
//! index exists. Shard boundaries depend only on the documents and the tokenizer, so a resumed
//! run writes the same bytes as an uninterrupted one. Every document ends with the tokenizer's
//! `<|endoftext|>` id (when it has one), counted in its `len`. Opening a split checks each shard's
//! size and that every id is below the vocabulary size; `verify` also checks the hashes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Document, Split, stable_hash};
use crate::error::{Context, DataError, Result, fail};
use crate::fsutil::atomic_write;
use crate::progress::Progress;
use crate::tokenizer::Tokenizer;

/// Version of this on-disk layout.
/// 2: documents end with `<|endoftext|>`; shard indexes hold the shard's SHA-256.
pub const FORMAT_VERSION: u32 = 2;

/// How token ids are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// 2 bytes per token (vocab ≤ 65536).
    U16,
    /// 4 bytes per token.
    U32,
}

impl TokenDtype {
    /// The smallest type that holds ids below `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 { TokenDtype::U16 } else { TokenDtype::U32 }
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// One document in a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocEntry {
    /// Corpus id (book id, `file:line`, path).
    pub id: String,
    /// Title.
    pub title: String,
    /// Token offset inside its shard.
    pub offset: u64,
    /// Number of tokens.
    pub len: u64,
    /// UTF-8 bytes of the text (for bits per byte).
    pub bytes: u64,
    /// Whitespace-separated words of the text (for word-level perplexity).
    pub words: u64,
    /// Token ranges `[start, end)` of the answers (synthetic tasks; see `data.loss_on`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<[u64; 2]>,
}

/// The index of one shard: `00000.idx.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardIndex {
    /// SHA-256 of the shard's bytes.
    sha256: String,
    /// Its documents, in order.
    documents: Vec<DocEntry>,
}

/// Totals of one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Documents kept (those with at least one token).
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
    /// UTF-8 bytes of text.
    pub bytes: u64,
    /// Whitespace-separated words.
    pub words: u64,
    /// Number of shards.
    pub shards: u32,
}

/// What a prepared folder holds and how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// SHA-256 of the tokenizer.json used.
    pub tokenizer_hash: String,
    /// The tokenizer's vocabulary size (the model's `vocab_size` must equal it).
    pub vocab_size: usize,
    /// Token storage type.
    pub dtype: TokenDtype,
    /// The `<|endoftext|>` id that ends every document (none when the tokenizer lacks it).
    pub end_of_text: Option<u32>,
    /// Where the text came from (folder, format, filter).
    pub source: String,
    /// Hash of the source files' names and sizes.
    pub source_fingerprint: String,
    /// Target tokens per shard.
    pub shard_tokens: u64,
    /// Per split totals.
    pub splits: BTreeMap<Split, SplitSummary>,
}

/// The settings of a preparation, saved as `prepare.json` while it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PrepareState {
    format_version: u32,
    tokenizer_hash: String,
    source: String,
    source_fingerprint: String,
    shard_tokens: u64,
}

fn shard_paths(dir: &Path, split: Split, index: u32) -> (PathBuf, PathBuf) {
    let base = dir.join(split.name());
    (base.join(format!("{index:05}.bin")), base.join(format!("{index:05}.idx.json")))
}

/// Hash of the names and sizes of a corpus's files: changes when the corpus does.
fn fingerprint(corpus: &Corpus) -> Result<String> {
    let mut text = corpus.synthetic.as_ref().map(|s| s.describe()).unwrap_or_default();
    for split in Split::ALL {
        for path in corpus.files(split)? {
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            text += &format!("{split} {} {len}\n", path.strip_prefix(&corpus.root).unwrap_or(&path).display());
        }
    }
    Ok(format!("{:016x}", stable_hash(text.as_bytes())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).context(|| format!("{} is corrupt (invalid JSON)", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    atomic_write(path, text.as_bytes())
}

/// Options of [`prepare`].
pub struct PrepareOptions {
    /// Target tokens per shard (a shard ends after the document that reaches it).
    pub shard_tokens: u64,
    /// Documents tokenized in parallel per batch.
    pub batch_documents: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { shard_tokens: 16 << 20, batch_documents: 64 }
    }
}

/// Tokenizes every split of `corpus` into `out`. Idempotent: a complete folder made from the
/// same corpus and tokenizer is left as is; an interrupted one is resumed.
pub fn prepare(corpus: &Corpus, tokenizer: &Tokenizer, out: &Path, options: &PrepareOptions) -> Result<Manifest> {
    let source = format!(
        "{} ({:?}{})",
        corpus.root.display(),
        corpus.format,
        corpus.config_filter.as_ref().map(|f| format!(", meta.config = {f}")).unwrap_or_default()
    );
    let state = PrepareState {
        format_version: FORMAT_VERSION,
        tokenizer_hash: tokenizer.hash.clone(),
        source: source.clone(),
        source_fingerprint: fingerprint(corpus)?,
        shard_tokens: options.shard_tokens,
    };
    if let Some(version) = other_format(out) {
        let aside = set_aside(out, version)?;
        eprintln!(
            "{} was prepared by another version of infini (format {version}, this one reads {FORMAT_VERSION}): moved it to {}, preparing again",
            out.display(),
            aside.display()
        );
    }
    let manifest_path = out.join("manifest.json");
    if manifest_path.exists() {
        // (A folder of another format was set aside above.)
        let existing: Manifest = read_json(&manifest_path).map_err(|_| old_format(out, &manifest_path))?;
        if existing.tokenizer_hash != state.tokenizer_hash {
            return fail(format!(
                "{} was prepared with another tokenizer (sha256 {}…, this one {}…); choose a new --out or delete it",
                out.display(),
                &existing.tokenizer_hash[..12.min(existing.tokenizer_hash.len())],
                &state.tokenizer_hash[..12]
            ));
        }
        if existing.source_fingerprint == state.source_fingerprint && existing.shard_tokens == state.shard_tokens {
            eprintln!("{} is up to date (same corpus and tokenizer); nothing to do", out.display());
            return Ok(existing);
        }
        return fail(format!(
            "{} holds data prepared from a different corpus ({}); choose a new --out or delete it",
            out.display(),
            existing.source
        ));
    }
    let state_path = out.join("prepare.json");
    if state_path.exists() {
        let previous: PrepareState = read_json(&state_path)?;
        if previous != state {
            return fail(format!(
                "{} holds an interrupted preparation of other data or with another tokenizer; choose a new --out or delete it",
                out.display()
            ));
        }
        eprintln!("resuming the interrupted preparation in {}", out.display());
    } else if out.exists() && fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return fail(format!("{} exists and is not a prepared-data folder; choose an empty or new --out", out.display()));
    }
    let (fresh, existed) = (!state_path.exists(), out.exists());
    let result = prepare_into(corpus, tokenizer, out, options, state, source);
    if result.is_err() && fresh {
        // A run that fails without resuming anything leaves the folder as it found it.
        if existed {
            for entry in fs::read_dir(out).into_iter().flatten().flatten() {
                let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
            }
        } else {
            let _ = fs::remove_dir_all(out);
        }
    }
    result
}

fn prepare_into(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    out: &Path,
    options: &PrepareOptions,
    state: PrepareState,
    source: String,
) -> Result<Manifest> {
    let manifest_path = out.join("manifest.json");
    let state_path = out.join("prepare.json");
    for split in Split::ALL {
        let dir = out.join(split.name());
        fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
        remove_temporaries(&dir)?;
    }
    write_json(&state_path, &state)?;
    let tokenizer_bytes = fs::read(&tokenizer.path).context(|| format!("cannot read {}", tokenizer.path.display()))?;
    atomic_write(&out.join("tokenizer.json"), &tokenizer_bytes)?;

    let dtype = TokenDtype::for_vocab(tokenizer.vocab_size());
    let mut splits = BTreeMap::new();
    for split in Split::ALL {
        let summary = prepare_split(corpus, tokenizer, out, split, dtype, options)?;
        if split == Split::Train && summary.documents == 0 {
            return fail(format!(
                "the train split of {} has no documents with text; check the folder and --format",
                corpus.root.display()
            ));
        }
        splits.insert(split, summary);
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        tokenizer_hash: state.tokenizer_hash,
        vocab_size: tokenizer.vocab_size(),
        dtype,
        end_of_text: tokenizer.token_id(crate::tokenizer::END_OF_TEXT),
        source,
        source_fingerprint: state.source_fingerprint,
        shard_tokens: options.shard_tokens,
        splits,
    };
    write_json(&manifest_path, &manifest)?;
    fs::remove_file(&state_path).context(|| format!("cannot remove {}", state_path.display()))?;
    Ok(manifest)
}

/// Deletes the temporary files a killed run may have left (see [`crate::fsutil::temp_path`]).
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            fs::remove_file(entry.path()).context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The committed shards of a split: their indexes, in order (each shard's size checked).
fn committed_shards(out: &Path, split: Split, dtype: TokenDtype) -> Result<Vec<ShardIndex>> {
    let mut shards = Vec::new();
    loop {
        let (bin, idx) = shard_paths(out, split, shards.len() as u32);
        if !idx.exists() {
            return Ok(shards);
        }
        let index: ShardIndex = read_json(&idx)?;
        let want = index.documents.iter().map(|d| d.len).sum::<u64>() * dtype.size() as u64;
        let have = fs::metadata(&bin).map(|m| m.len()).unwrap_or(u64::MAX);
        if have != want {
            return fail(format!(
                "{} holds {have} bytes but its index lists {want}: the prepared data is corrupt; delete {} and prepare again",
                bin.display(),
                out.display()
            ));
        }
        shards.push(index);
    }
}

/// Ids of a shard's bytes.
fn decode(bytes: &[u8], dtype: TokenDtype) -> impl Iterator<Item = u32> + '_ {
    let size = dtype.size();
    bytes.chunks_exact(size).map(move |b| if size == 2 { u16::from_le_bytes([b[0], b[1]]) as u32 } else { u32::from_le_bytes([b[0], b[1], b[2], b[3]]) })
}

/// The first id ≥ `vocab_size` in a shard, if any (threaded; memory bandwidth bound).
fn first_out_of_range(bytes: &[u8], dtype: TokenDtype, vocab_size: usize) -> Option<u32> {
    let chunk = dtype.size() << 20;
    bytes.par_chunks(chunk).find_map_first(|c| decode(c, dtype).find(|&t| t as usize >= vocab_size))
}

struct ShardWriter<'a> {
    out: &'a Path,
    split: Split,
    dtype: TokenDtype,
    index: u32,
    bytes: Vec<u8>,
    docs: Vec<DocEntry>,
    tokens: u64,
}

impl ShardWriter<'_> {
    fn push(&mut self, doc: &Document, ids: &[u32], answers: Vec<[u64; 2]>) {
        self.docs.push(DocEntry {
            answers,
            id: doc.id.clone(),
            title: doc.title.clone(),
            offset: self.tokens,
            len: ids.len() as u64,
            bytes: doc.text.len() as u64,
            words: doc.text.split_whitespace().count() as u64,
        });
        self.tokens += ids.len() as u64;
        match self.dtype {
            TokenDtype::U16 => ids.iter().for_each(|&t| self.bytes.extend_from_slice(&(t as u16).to_le_bytes())),
            TokenDtype::U32 => ids.iter().for_each(|&t| self.bytes.extend_from_slice(&t.to_le_bytes())),
        }
    }

    fn flush(&mut self) -> Result<()> {
        if self.docs.is_empty() {
            return Ok(());
        }
        let (bin, idx) = shard_paths(self.out, self.split, self.index);
        atomic_write(&bin, &self.bytes)?;
        let sha256 = crate::tokenizer::sha256_hex(&self.bytes);
        write_json(&idx, &ShardIndex { sha256, documents: std::mem::take(&mut self.docs) })?;
        self.index += 1;
        self.bytes.clear();
        self.docs.clear();
        self.tokens = 0;
        Ok(())
    }
}

fn prepare_split(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    out: &Path,
    split: Split,
    dtype: TokenDtype,
    options: &PrepareOptions,
) -> Result<SplitSummary> {
    let done = committed_shards(out, split, dtype)?;
    let skip: usize = done.iter().map(|s| s.documents.len()).sum();
    let mut summary = SplitSummary::default();
    for doc in done.iter().flat_map(|s| &s.documents) {
        summary.documents += 1;
        summary.tokens += doc.len;
        summary.bytes += doc.bytes;
        summary.words += doc.words;
    }
    let files = corpus.files(split)?.len() as u64;
    let mut progress = Progress::new(format!("preparing {split}"), "docs", None);
    progress.set_message(format!("{files} files"));
    let mut writer = ShardWriter {
        out,
        split,
        dtype,
        index: done.len() as u32,
        bytes: Vec::new(),
        docs: Vec::new(),
        tokens: 0,
    };
    let vocab = tokenizer.vocab_size() as u32;
    let end_of_text = tokenizer.token_id(crate::tokenizer::END_OF_TEXT);
    // Documents without tokens are dropped before counting, so `skip` counts kept documents.
    let count = |text: &str| tokenizer.encode(text).map_or(0, |ids| ids.len());
    let mut documents = corpus.documents_sized(split, &count)?.filter(|d| d.as_ref().map_or(true, |d| !d.text.is_empty()));
    let mut skipped = 0;
    while skipped < skip {
        match documents.next() {
            Some(Ok(_)) => skipped += 1,
            Some(Err(e)) => return Err(e),
            None => return fail(format!("{split}: the corpus has fewer documents than the shards already written; delete {} and prepare again", out.display())),
        }
    }
    progress.set_position(skip as u64);
    loop {
        let batch: Vec<Document> = documents.by_ref().take(options.batch_documents).collect::<Result<_>>()?;
        if batch.is_empty() {
            break;
        }
        let encoded: Vec<(Vec<u32>, Vec<[u64; 2]>)> = batch.par_iter().map(|d| encode_document(tokenizer, d)).collect::<Result<_>>()?;
        for (doc, (mut ids, answers)) in batch.iter().zip(encoded) {
            ids.extend(end_of_text);
            let ids = &ids;
            if let Some(&bad) = ids.iter().find(|&&t| t >= vocab) {
                return fail(format!("tokenizer produced id {bad} ≥ its vocab size {vocab}: the tokenizer file is inconsistent"));
            }
            writer.push(doc, ids, answers);
            summary.documents += 1;
            summary.tokens += ids.len() as u64;
            summary.bytes += doc.text.len() as u64;
            summary.words += doc.text.split_whitespace().count() as u64;
            if writer.tokens >= options.shard_tokens {
                writer.flush()?;
            }
        }
        progress.set_position(summary.documents);
        progress.set_message(format!("{} tokens", summary.tokens));
    }
    writer.flush()?;
    summary.shards = writer.index;
    progress.finish();
    Ok(summary)
}

/// The tokens of a document and the token ranges of its answers: a document with spans is
/// tokenized piece by piece, so that every answer is a whole number of tokens; answer pieces
/// that follow each other make one answer.
fn encode_document(tokenizer: &Tokenizer, doc: &Document) -> Result<(Vec<u32>, Vec<[u64; 2]>)> {
    if doc.spans.is_empty() {
        return Ok((tokenizer.encode(&doc.text)?, Vec::new()));
    }
    let (mut ids, mut start) = (Vec::new(), 0);
    let mut answers: Vec<[u64; 2]> = Vec::new();
    for span in &doc.spans {
        let piece = tokenizer.encode(&doc.text[start..span.end])?;
        if span.answer && !piece.is_empty() {
            let (from, to) = (ids.len() as u64, (ids.len() + piece.len()) as u64);
            match answers.last_mut() {
                Some([_, end]) if *end == from => *end = to,
                _ => answers.push([from, to]),
            }
        }
        ids.extend(piece);
        start = span.end;
    }
    Ok((ids, answers))
}

/// Opened prepared data (read-only).
pub struct PreparedData {
    /// The folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl PreparedData {
    /// Opens a prepared folder; errors if it is missing, incomplete or of another version.
    pub fn open(dir: &Path) -> Result<PreparedData> {
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.exists() {
            let hint = if dir.join("prepare.json").exists() {
                "its preparation was interrupted: run `infini data prepare` again to finish it"
            } else {
                "prepare it first with `infini data prepare`"
            };
            return fail(format!("{} is not prepared data (no manifest.json): {hint}", dir.display()));
        }
        let manifest: Manifest = read_json(&manifest_path).map_err(|_| old_format(dir, &manifest_path))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(old_format(dir, &manifest_path));
        }
        Ok(PreparedData { dir: dir.to_path_buf(), manifest })
    }

    /// Memory-maps one split, checking each shard's size and that its ids are in the vocabulary.
    pub fn split(&self, split: Split) -> Result<SplitData> {
        let summary = self.manifest.splits.get(&split).cloned().unwrap_or_default();
        let (dtype, vocab) = (self.manifest.dtype, self.manifest.vocab_size);
        let mut shards = Vec::new();
        let mut docs = Vec::new();
        for (i, index) in committed_shards(&self.dir, split, dtype)?.into_iter().enumerate() {
            let (bin, _) = shard_paths(&self.dir, split, i as u32);
            let file = fs::File::open(&bin).context(|| format!("cannot open {}", bin.display()))?;
            // SAFETY: shards are immutable once written (atomic rename) and only read here.
            let map = unsafe { Mmap::map(&file) }.context(|| format!("cannot map {}", bin.display()))?;
            if let Some(bad) = first_out_of_range(&map, dtype, vocab) {
                return fail(out_of_range(&bin, bad, vocab, &self.dir));
            }
            shards.push(map);
            docs.extend(index.documents.into_iter().map(|d| (i, d)));
        }
        if docs.len() as u64 != summary.documents {
            return fail(format!(
                "{}: manifest lists {} {split} documents but the shards hold {}; prepare the data again",
                self.dir.display(),
                summary.documents,
                docs.len()
            ));
        }
        Ok(SplitData { split, shards, docs, dtype: self.manifest.dtype })
    }

    /// Reads every shard in full: its size, SHA-256 against its index, every id below the
    /// vocabulary size, and the document ranges. Returns one line per split checked.
    pub fn verify(&self) -> Result<Vec<String>> {
        let (dtype, vocab) = (self.manifest.dtype, self.manifest.vocab_size);
        let mut report = Vec::new();
        for split in Split::ALL {
            let (mut tokens, mut documents) = (0u64, 0u64);
            let shards = committed_shards(&self.dir, split, dtype)?;
            for (i, index) in shards.iter().enumerate() {
                let (bin, _) = shard_paths(&self.dir, split, i as u32);
                let bytes = fs::read(&bin).context(|| format!("cannot read {}", bin.display()))?;
                let hash = crate::tokenizer::sha256_hex(&bytes);
                if hash != index.sha256 {
                    return fail(format!(
                        "{}: SHA-256 {}… differs from its index's {}…: the shard is corrupt; delete {} and prepare again",
                        bin.display(),
                        &hash[..12],
                        &index.sha256[..12.min(index.sha256.len())],
                        self.dir.display()
                    ));
                }
                if let Some(bad) = first_out_of_range(&bytes, dtype, vocab) {
                    return fail(out_of_range(&bin, bad, vocab, &self.dir));
                }
                let mut offset = 0;
                for d in &index.documents {
                    if d.offset != offset || d.answers.iter().any(|[a, b]| a > b || *b > d.len) {
                        return fail(format!("{}: the entry of document {} is inconsistent; prepare the data again", bin.display(), d.id));
                    }
                    offset += d.len;
                }
                tokens += offset;
                documents += index.documents.len() as u64;
            }
            let summary = self.manifest.splits.get(&split).cloned().unwrap_or_default();
            if (documents, tokens, shards.len() as u32) != (summary.documents, summary.tokens, summary.shards) {
                return fail(format!(
                    "{}: manifest lists {} {split} documents, {} tokens, {} shards but the shards hold {documents}, {tokens}, {}; prepare the data again",
                    self.dir.display(),
                    summary.documents,
                    summary.tokens,
                    summary.shards,
                    shards.len()
                ));
            }
            report.push(format!("{split}: {} shards, {documents} documents, {tokens} tokens: hashes and ids ok", shards.len()));
        }
        Ok(report)
    }
}

fn out_of_range(bin: &Path, id: u32, vocab: usize, dir: &Path) -> String {
    format!(
        "{} holds token id {id} ≥ the vocabulary size {vocab}: the shard is corrupt; delete {} and prepare again",
        bin.display(),
        dir.display()
    )
}

/// The prepared-data format of the folder `dir` (from its manifest, or the state of an
/// interrupted preparation) if it is another than [`FORMAT_VERSION`].
fn other_format(dir: &Path) -> Option<u64> {
    ["manifest.json", "prepare.json"]
        .iter()
        .find_map(|name| format_version(&dir.join(name)).filter(|&v| v != FORMAT_VERSION as u64))
}

/// The `format_version` a manifest or preparation state `file` records, if it can be read.
fn format_version(file: &Path) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get("format_version")?.as_u64()
}

/// Renames `dir` to `<dir>.format-<version>` (numbered if that is taken) and returns the new path.
fn set_aside(dir: &Path, version: u64) -> Result<PathBuf> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let free = (0..1000)
        .map(|i| dir.with_file_name(if i == 0 { format!("{name}.format-{version}") } else { format!("{name}.format-{version}-{i}") }))
        .find(|p| !p.exists())
        .ok_or_else(|| DataError(format!("{}: no free name to set it aside; move it yourself", dir.display())))?;
    fs::rename(dir, &free).map_err(|e| DataError(format!("cannot move {} aside to {}: {e}", dir.display(), free.display())))?;
    Ok(free)
}

/// The error for a folder this version cannot read (older layouts fail to parse as a manifest).
fn old_format(dir: &Path, file: &Path) -> DataError {
    match format_version(file) {
        Some(v) if v != FORMAT_VERSION as u64 => DataError(format!(
            "{} uses prepared-data format {v}, but this infini reads format {FORMAT_VERSION} (documents end with <|endoftext|>); run `infini data prepare` again (it sets this folder aside)",
            dir.display()
        )),
        // Only a readable other format is set aside; anything else is left for the user.
        _ => DataError(format!(
            "{} has an unreadable {}; delete it or choose another folder, and run `infini data prepare`",
            dir.display(),
            file.file_name().unwrap_or_default().to_string_lossy()
        )),
    }
}

/// One split's documents, memory-mapped.
pub struct SplitData {
    /// Which split.
    pub split: Split,
    shards: Vec<Mmap>,
    docs: Vec<(usize, DocEntry)>,
    dtype: TokenDtype,
}

impl SplitData {
    /// Builds a split from in-memory documents (tests, generated data).
    pub fn from_documents(split: Split, documents: Vec<(String, Vec<u32>)>) -> SplitData {
        let mut bytes = Vec::new();
        let mut docs = Vec::new();
        let mut offset = 0;
        for (title, ids) in documents {
            ids.iter().for_each(|t| bytes.extend_from_slice(&t.to_le_bytes()));
            let len = ids.len() as u64;
            docs.push((0, DocEntry { id: title.clone(), title, offset, len, bytes: len, words: len, answers: Vec::new() }));
            offset += len;
        }
        let mut map = memmap2::MmapMut::map_anon(bytes.len().max(1)).expect("anonymous map");
        map[..bytes.len()].copy_from_slice(&bytes);
        SplitData { split, shards: vec![map.make_read_only().expect("read-only map")], docs, dtype: TokenDtype::U32 }
    }

    /// [`Self::from_documents`] with the answer ranges of each document (tests, generated data).
    pub fn from_answered(split: Split, documents: Vec<(String, Vec<u32>, Vec<[u64; 2]>)>) -> SplitData {
        let answers: Vec<Vec<[u64; 2]>> = documents.iter().map(|d| d.2.clone()).collect();
        let mut data = Self::from_documents(split, documents.into_iter().map(|(t, ids, _)| (t, ids)).collect());
        for ((_, entry), a) in data.docs.iter_mut().zip(answers) {
            entry.answers = a;
        }
        data
    }

    /// Whether any document has answer ranges (only synthetic tasks do).
    pub fn has_answers(&self) -> bool {
        self.docs.iter().any(|(_, d)| !d.answers.is_empty())
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the split has no documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The index entry of document `i`.
    pub fn doc(&self, i: usize) -> &DocEntry {
        &self.docs[i].1
    }

    /// Tokens `range` of document `i` (clamped to its length).
    pub fn tokens(&self, i: usize, range: std::ops::Range<usize>) -> Vec<u32> {
        let (shard, doc) = &self.docs[i];
        let end = range.end.min(doc.len as usize);
        let start = range.start.min(end);
        let size = self.dtype.size();
        let from = (doc.offset as usize + start) * size;
        let bytes = &self.shards[*shard][from..from + (end - start) * size];
        match self.dtype {
            TokenDtype::U16 => bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect(),
            TokenDtype::U32 => bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        }
    }

    /// All tokens of document `i`.
    pub fn doc_tokens(&self, i: usize) -> Vec<u32> {
        self.tokens(i, 0..self.doc(i).len as usize)
    }

    /// Total tokens over all documents.
    pub fn total_tokens(&self) -> u64 {
        self.docs.iter().map(|(_, d)| d.len).sum()
    }
}
