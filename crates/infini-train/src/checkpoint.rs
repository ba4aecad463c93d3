//! Checkpoints: one folder per save, written whole into a temporary folder, fsynced, then renamed.
//!
//! ```text
//! RUN/checkpoints/step-00000100/
//!     model.bpk        model weights (burnpack)
//!     optimizer.bpk    optimizer state (burnpack)
//!     state.json       step, tokens, data cursor, best validation loss, …
//!     config.toml      the resolved run config
//!     tokenizer.json   the tokenizer of the training data (so the checkpoint stands alone)
//!     memory.bin       carried memory (streaming mode only), little-endian f32
//! RUN/checkpoints/best/  hard links to the files of the best checkpoint so far
//! ```
//! A folder is either complete or absent (a half-written one keeps its temporary name), so a
//! crash at any moment leaves the previous checkpoints loadable.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use infini_data::StreamCursor;
use infini_data::fsutil::{sync_dir, temp_path};
use infini_model::{InfiniLm, MemoryState, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;

/// Training progress saved with the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Training tokens (targets) seen.
    pub tokens: u64,
    /// The data stream's position.
    pub cursor: StreamCursor,
    /// Best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// Steps skipped for non-finite loss or gradients, in total.
    pub skipped_steps: u64,
    /// Consecutive skipped steps at save time.
    pub bad_in_row: u64,
    /// Training seconds so far.
    pub seconds: f64,
    /// SHA-256 of the tokenizer of the training data.
    pub tokenizer_hash: String,
    /// Shapes of the tensors of the carried memory in `memory.bin` (streaming mode).
    #[serde(default)]
    pub memory_shapes: Vec<Vec<usize>>,
}

/// A checkpoint that could not be read or does not fit.
pub type Result<T> = std::result::Result<T, String>;

fn io<T>(r: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Fault-injection aid: `INFINI_CHECKPOINT_DELAY_MS` pauses after every file of a checkpoint,
/// so that `scripts/fault-test.sh` can kill the process in the middle of a checkpoint write.
fn injected_delay() {
    static DELAY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *DELAY.get_or_init(|| std::env::var("INFINI_CHECKPOINT_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    injected_delay();
    let mut f = io(fs::File::create(path), || format!("cannot create {}", path.display()))?;
    io(f.write_all(bytes), || format!("cannot write {} (disk full?)", path.display()))?;
    io(f.sync_all(), || format!("cannot sync {}", path.display()))
}

/// Name of the checkpoint folder of `step`.
pub fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Everything a checkpoint holds, borrowed for saving.
pub struct Snapshot<'a> {
    /// The model.
    pub model: &'a InfiniLm,
    /// The optimizer.
    pub optimizer: &'a ModuleOptimizer,
    /// Progress.
    pub state: &'a TrainState,
    /// The resolved config.
    pub config: &'a RunConfig,
    /// Carried memory (streaming mode).
    pub memory: Option<&'a MemoryState>,
}

/// Writes a checkpoint of `snapshot` into `RUN/checkpoints/step-N` atomically; returns its path.
pub fn save(run_dir: &Path, snapshot: &Snapshot) -> Result<PathBuf> {
    let dir = run_dir.join("checkpoints");
    io(fs::create_dir_all(&dir), || format!("cannot create {}", dir.display()))?;
    let final_path = dir.join(step_name(snapshot.state.step));
    let tmp = temp_path(&final_path);
    let _ = fs::remove_dir_all(&tmp);
    io(fs::create_dir(&tmp), || format!("cannot create {}", tmp.display()))?;
    let written = (|| {
        let model = snapshot.model.clone().into_record().into_bytes().map_err(|e| format!("cannot encode model: {e}"))?;
        write_synced(&tmp.join("model.bpk"), &model)?;
        let optimizer = snapshot.optimizer.into_bytes().map_err(|e| format!("cannot encode optimizer state: {e}"))?;
        write_synced(&tmp.join("optimizer.bpk"), &optimizer)?;
        let mut state = snapshot.state.clone();
        if let Some(memory) = snapshot.memory {
            let parts = memory.to_parts();
            state.memory_shapes = parts.iter().map(|(shape, _)| shape.clone()).collect();
            let bytes: Vec<u8> = parts.into_iter().flat_map(|(_, values)| values.into_iter().flat_map(f32::to_le_bytes)).collect();
            write_synced(&tmp.join("memory.bin"), &bytes)?;
        }
        write_synced(&tmp.join("state.json"), serde_json::to_string_pretty(&state).expect("state").as_bytes())?;
        write_synced(&tmp.join("config.toml"), snapshot.config.to_toml().as_bytes())?;
        let tokenizer = snapshot.config.data.prepared.join("tokenizer.json");
        if let Ok(bytes) = fs::read(&tokenizer) {
            write_synced(&tmp.join("tokenizer.json"), &bytes)?;
        }
        sync_dir(&tmp).map_err(|e| e.to_string())?;
        if final_path.exists() {
            remove_checkpoint(&final_path);
        }
        io(fs::rename(&tmp, &final_path), || format!("cannot move checkpoint into {}", final_path.display()))?;
        sync_dir(&dir).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("checkpoint not saved ({e}); the previous checkpoints are intact"));
    }
    Ok(final_path)
}

/// Creates the folder `out`, which must not exist, as a whole: `fill` writes its files into a
/// temporary sibling, every file is fsynced, then the folder is renamed into place. On an error
/// nothing is left behind and an existing `out` is never touched.
pub fn create_folder_atomically(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if out.exists() {
        return Err(format!("{} already exists; choose another --out or delete it", out.display()));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    io(fs::create_dir_all(parent), || format!("cannot create {}", parent.display()))?;
    let tmp = temp_path(out);
    let _ = fs::remove_dir_all(&tmp);
    io(fs::create_dir(&tmp), || format!("cannot create {}", tmp.display()))?;
    let written = (|| {
        fill(&tmp)?;
        for entry in io(fs::read_dir(&tmp), || format!("cannot list {}", tmp.display()))?.flatten() {
            let path = entry.path();
            io(fs::File::open(&path).and_then(|f| f.sync_all()), || format!("cannot sync {}", path.display()))?;
        }
        sync_dir(&tmp).map_err(|e| e.to_string())?;
        io(fs::rename(&tmp, out), || format!("cannot move {} into place", out.display()))?;
        sync_dir(parent).map_err(|e| e.to_string())
    })();
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

/// Writes a checkpoint that is not part of a run (an imported model) into the new folder `out`:
/// `model.bpk`, `config.toml`, `state.json` and `tokenizer.json`, no optimizer state.
pub fn save_standalone(out: &Path, model: &InfiniLm, config: &RunConfig, state: &TrainState, tokenizer: &[u8]) -> Result<()> {
    create_folder_atomically(out, |tmp| {
        let write = |name: &str, bytes: &[u8]| io(fs::write(tmp.join(name), bytes), || format!("cannot write {name} (disk full?)"));
        // Written tensor by tensor (no second copy of the weights in memory).
        let path = tmp.join("model.bpk");
        model.clone().into_record().save(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        write("state.json", serde_json::to_string_pretty(state).expect("state").as_bytes())?;
        write("config.toml", config.to_toml().as_bytes())?;
        write("tokenizer.json", tokenizer)
    })
}

/// Checkpoint folders of a run, oldest first.
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(run_dir.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join("state.json").exists().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Deletes a checkpoint folder without ever leaving a partial one under its name: it is first
/// renamed to a hidden name, then removed.
fn remove_checkpoint(path: &Path) {
    let hidden = path.with_file_name(format!(".{}.deleting", path.file_name().unwrap_or_default().to_string_lossy()));
    if fs::rename(path, &hidden).is_ok() {
        let _ = fs::remove_dir_all(&hidden);
    }
}

/// Removes all but the newest `keep` checkpoints, and the hidden leftovers (temporary or
/// half-deleted folders) of interrupted runs.
pub fn prune(run_dir: &Path, keep: usize) {
    let all = list(run_dir);
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        remove_checkpoint(path);
    }
    for entry in fs::read_dir(run_dir.join("checkpoints")).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes `RUN/checkpoints/best` hold the files of `checkpoint` (hard links, else copies).
pub fn mark_best(run_dir: &Path, checkpoint: &Path) -> Result<()> {
    let dir = run_dir.join("checkpoints");
    let best = dir.join("best");
    let tmp = temp_path(&best);
    let _ = fs::remove_dir_all(&tmp);
    io(fs::create_dir(&tmp), || format!("cannot create {}", tmp.display()))?;
    for entry in io(fs::read_dir(checkpoint), || format!("cannot list {}", checkpoint.display()))?.flatten() {
        let to = tmp.join(entry.file_name());
        if fs::hard_link(entry.path(), &to).is_err() {
            io(fs::copy(entry.path(), &to), || format!("cannot copy {}", entry.path().display()))?;
        }
    }
    let old = dir.join(format!(".best.old-{}", std::process::id()));
    if best.exists() {
        io(fs::rename(&best, &old), || format!("cannot replace {}", best.display()))?;
    }
    io(fs::rename(&tmp, &best), || format!("cannot create {}", best.display()))?;
    let _ = fs::remove_dir_all(&old);
    sync_dir(&dir).map_err(|e| e.to_string())
}

/// A checkpoint folder named on the command line: a checkpoint itself, or a run folder
/// (its `best` checkpoint if any, else its latest).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("model.bpk").exists() {
        return Ok(path.to_path_buf());
    }
    if path.join("checkpoints/best/model.bpk").exists() {
        return Ok(path.join("checkpoints/best"));
    }
    match list(path).pop() {
        Some((_, p)) => Ok(p),
        None if path.exists() => Err(format!("{} holds no checkpoint (no model.bpk, no checkpoints/step-*)", path.display())),
        None => Err(format!("checkpoint {} does not exist", path.display())),
    }
}

/// Reads a checkpoint's config and training state.
pub fn read_meta(checkpoint: &Path) -> Result<(RunConfig, TrainState)> {
    let config: RunConfig = infini_data::toml_file::read(&checkpoint.join("config.toml"))?;
    let state_path = checkpoint.join("state.json");
    let text = io(fs::read_to_string(&state_path), || format!("cannot read {}", state_path.display()))?;
    let state = serde_json::from_str(&text).map_err(|e| format!("{} is corrupt: {e}", state_path.display()))?;
    Ok((config, state))
}

/// The fields of two model configs that decide the parameter shapes and differ.
pub fn shape_differences(a: &ModelConfig, b: &ModelConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name} {x} → {y}"));
        }
    };
    check("vocab_size", a.vocab_size.to_string(), b.vocab_size.to_string());
    check("d_model", a.d_model.to_string(), b.d_model.to_string());
    check("n_layers", a.n_layers.to_string(), b.n_layers.to_string());
    check("n_heads", a.n_heads.to_string(), b.n_heads.to_string());
    check("n_kv_heads", a.kv_heads().to_string(), b.kv_heads().to_string());
    check("head_dim", a.head_dim().to_string(), b.head_dim().to_string());
    check("ffn_hidden", a.ffn_hidden.to_string(), b.ffn_hidden.to_string());
    check("tie_embeddings", a.tie_embeddings.to_string(), b.tie_embeddings.to_string());
    let kind = |m: &ModelConfig| if m.memory.has_memory() { "compressive (gates β)" } else { "no gates" }.to_string();
    check("memory", kind(a), kind(b));
    out
}

/// A checkpoint ready for inference: the model (on `device`, no autodiff), its config and state.
pub fn load_for_inference(path: &Path, device: &Device) -> Result<(InfiniLm, RunConfig, TrainState, PathBuf)> {
    let ckpt = resolve(path)?;
    let (config, state) = read_meta(&ckpt)?;
    let model = load_model(&ckpt, config.model.init_lazy(device))?;
    Ok((model, config, state, ckpt))
}

/// The tokenizer saved in a checkpoint (or, for older ones, that of its training data).
pub fn tokenizer(checkpoint: &Path, config: &RunConfig) -> Result<infini_data::Tokenizer> {
    let own = checkpoint.join("tokenizer.json");
    let path = if own.exists() { own } else { config.data.prepared.join("tokenizer.json") };
    infini_data::Tokenizer::load(&path).map_err(|e| e.to_string())
}

/// Loads the weights of `checkpoint` into `model`; the error says which shapes differ.
pub fn load_model(checkpoint: &Path, model: InfiniLm) -> Result<InfiniLm> {
    let path = checkpoint.join("model.bpk");
    let bytes = io(fs::read(&path), || format!("cannot read {}", path.display()))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| format!("{} is corrupt or not a model checkpoint: {e}", path.display()))?;
    model.try_load_record(record).map_err(|e| format!("{} does not fit this model: {e}", path.display()))
}

/// Loads the optimizer state of `checkpoint` into `optimizer`.
pub fn load_optimizer(checkpoint: &Path, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = checkpoint.join("optimizer.bpk");
    let bytes = io(fs::read(&path), || format!("cannot read {}", path.display()))?;
    optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| format!("{} is corrupt: {e}", path.display()))
}

/// Loads the carried memory saved in streaming mode, if any.
pub fn load_memory(checkpoint: &Path, config: &ModelConfig, state: &TrainState, device: &Device) -> Result<Option<MemoryState>> {
    if state.memory_shapes.is_empty() {
        return Ok(None);
    }
    let path = checkpoint.join("memory.bin");
    let bytes = io(fs::read(&path), || format!("cannot read {}", path.display()))?;
    let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut offset = 0;
    let mut parts = Vec::new();
    for shape in &state.memory_shapes {
        let n: usize = shape.iter().product();
        let slice = values.get(offset..offset + n).ok_or_else(|| format!("{} is truncated", path.display()))?;
        parts.push((shape.clone(), slice.to_vec()));
        offset += n;
    }
    MemoryState::from_parts(config, parts, device).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}
