//! Tokenizers: train a byte-level BPE on a corpus, or load any Hugging Face `tokenizer.json`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::corpus::Document;
use crate::error::{Context, DataError, Result, fail, one_line};
use crate::fsutil::atomic_write;
use crate::progress::Progress;

/// The end-of-text token every trained tokenizer gets, at id 0.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A loaded tokenizer and the SHA-256 of its `tokenizer.json`, which prepared data records.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Hex SHA-256 of the tokenizer file's bytes.
    pub hash: String,
    /// Where it was loaded from.
    pub path: PathBuf,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).context(|| format!("cannot read tokenizer {}", path.display()))?;
        let text = std::str::from_utf8(&bytes).context(|| format!("tokenizer {}", path.display()))?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e: Box<dyn std::error::Error + Send + Sync>| {
            DataError(format!(
                "{} is not a valid tokenizer.json: {}",
                path.display(),
                one_line(&e.to_string())
            ))
        })?;
        Ok(Tokenizer { inner, hash: sha256_hex(&bytes), path: path.to_path_buf() })
    }

    /// Number of token ids, added tokens included: the model's `vocab_size` must equal it.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| DataError(format!("tokenizing failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| DataError(format!("decoding failed: {e}")))
    }

    /// Id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Trains a byte-level BPE of `vocab_size` ids on `documents` (at most `max_bytes` of text),
/// writes it atomically to `out` and returns it loaded. Id 0 is [`END_OF_TEXT`].
/// `expected_bytes`, if known, sizes the progress bar. With `split_digits` every digit is a
/// token of its own (numbers are never merged), as in Llama's and PaLM's tokenizers: a key
/// of 5 digits is then always 5 tokens from a set of 10.
pub fn train_bpe(
    documents: impl Iterator<Item = Result<Document>> + Send,
    vocab_size: usize,
    max_bytes: u64,
    expected_bytes: Option<u64>,
    split_digits: bool,
    out: &Path,
) -> Result<Tokenizer> {
    if vocab_size < 257 {
        return fail(format!("--vocab-size must be at least 257 (256 bytes + {END_OF_TEXT}), got {vocab_size}"));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build();
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::default().add_prefix_space(false));
    let pre_tokenizer = if split_digits {
        PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level]))
    } else {
        byte_level
    };
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, PreTokenizerWrapper, ByteLevel, ByteLevel>::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| DataError(format!("cannot build tokenizer: {e}")))?;

    // Stream documents into the trainer up to the byte budget; the first read error stops it.
    let progress = Mutex::new(Progress::new("training BPE", "bytes", expected_bytes.map(|b| b.min(max_bytes))));
    let first_error: Mutex<Option<DataError>> = Mutex::new(None);
    let mut total = 0u64;
    let texts = documents.map_while(|doc| match doc {
        Ok(doc) if total < max_bytes => {
            total += doc.text.len() as u64;
            progress.lock().unwrap().set_position(total.min(max_bytes));
            Some(doc.text)
        }
        Ok(_) => None,
        Err(e) => {
            *first_error.lock().unwrap() = Some(e);
            None
        }
    });
    let start = std::time::Instant::now();
    let trained = tokenizer.train(&mut trainer, texts).map(|_| ());
    progress.into_inner().unwrap().finish();
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    trained.map_err(|e| DataError(format!("BPE training failed: {e}")))?;
    if tokenizer.get_vocab_size(true) <= 257 {
        return fail("the corpus has too little text to learn any BPE merges (empty train split?)");
    }
    let tokenizer = tokenizers::Tokenizer::from(tokenizer);
    let json = tokenizer.to_string(false).map_err(|e| DataError(format!("cannot serialise tokenizer: {e}")))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    }
    atomic_write(out, json.as_bytes())?;
    eprintln!("trained in {:.1}s, wrote {}", start.elapsed().as_secs_f64(), out.display());
    Tokenizer::load(out)
}
