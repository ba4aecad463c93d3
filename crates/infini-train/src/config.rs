//! The run config: `[model]`, `[data]`, `[train]`, `[eval]` and `[checkpoint]` in one TOML file,
//! with `--set section.key=value` overrides. Unknown keys are errors that name them.

use std::path::{Path, PathBuf};

use infini_model::ModelConfig;
use serde::{Deserialize, Serialize};

/// Everything a training run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model.
    pub model: ModelConfig,
    /// Training data.
    pub data: DataConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// Validation during training.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Where and how often to save.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

/// `[data]`: which prepared data, and how it is cut into training examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A folder made by `infini data prepare` (relative to the working directory).
    pub prepared: PathBuf,
    /// Parallel streams (sequences) per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Tokens per training example L (a multiple of the segment length; memory starts empty).
    #[serde(default = "d_seq_len")]
    pub seq_len: usize,
    /// Carry each stream's memory from one example to the next within a book (detached).
    #[serde(default)]
    pub streaming: bool,
    /// Seed of the document order.
    #[serde(default)]
    pub seed: u64,
    /// Which targets carry the loss: `all` tokens, or only the `answers` of a synthetic task
    /// (training and validation alike).
    #[serde(default)]
    pub loss_on: LossOn,
    /// Every training example starts a new document in every stream (cut to seq_len, padded
    /// after its end), so one backprop window spans a whole document — a passkey and its
    /// question together. Off: streams run on through the documents, examples cut anywhere.
    #[serde(default)]
    pub align_documents: bool,
}

/// `data.loss_on`: which targets the loss counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// Every token.
    #[default]
    All,
    /// Only the answer tokens of a synthetic task.
    Answers,
}

/// Optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW with decoupled weight decay.
    Adamw,
    /// Adafactor (factored second moments), the paper's optimizer.
    Adafactor,
}

/// Number format of the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    F32,
    /// bf16 matrix products (projections, FFN, attention, head); weights, optimizer state,
    /// norms, softmax statistics and the memory stay f32.
    Bf16,
}

impl Precision {
    /// The compute type for [`infini_model::InfiniLm::with_compute`].
    pub fn compute(self) -> infini_model::precision::Compute {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(burn::tensor::DType::BF16),
        }
    }
}

/// `[train]`: optimisation and truncated backprop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// `adamw` or `adafactor`.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Cosine decay floor, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay (not applied to norms or gates).
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Global gradient-norm clip over all parameters (0 = off).
    pub grad_clip: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Segments per backprop window; 0 = every segment of the example (full backprop, as the paper).
    pub tbptt_segments: usize,
    /// Learning-rate multiplier of the gates β.
    pub gate_lr_multiplier: f64,
    /// Seed of initialisation and dropout.
    pub seed: u64,
    /// Consecutive non-finite steps tolerated (each is skipped) before the run stops.
    pub max_bad_steps: u64,
    /// Off a terminal (CI, logs), print a progress line every this many steps (0 = every 10 s).
    pub log_every: u64,
    /// `f32`, or `bf16` matrix products (mixed precision; the memory stays f32).
    pub precision: Precision,
    /// Activation checkpointing by segment: the forward pass keeps only each segment's incoming
    /// memory, and the backward pass recomputes one segment at a time, so a backprop window
    /// holds the activations of one segment instead of all of them (one extra forward pass of
    /// the blocks; the same gradients). For full backprop through many long segments.
    pub checkpointing: bool,
    /// Memory dilution (1 = off, as in the paper): each segment's write into the compressive
    /// memory counts w times, w drawn per segment and stream log-uniformly from [1, this], as
    /// if the segment had been repeated w times. Documents of the training length then leave
    /// memories as diluted as up to this many times longer ones would, so the read learns to
    /// find a needle among more writes than the training length holds (docs/results.md,
    /// passkey). Costs nothing per step.
    pub write_repeat_max: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            warmup_steps: 100,
            min_lr_ratio: 0.1,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            grad_accum: 1,
            tbptt_segments: 0,
            gate_lr_multiplier: 10.0,
            seed: 0,
            max_bad_steps: 10,
            log_every: 10,
            precision: Precision::F32,
            checkpointing: false,
            write_repeat_max: 1.0,
        }
    }
}

/// `[eval]`: validation while training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Validate every this many steps (0 = only at the end).
    pub every: u64,
    /// Validation documents (whole, in order); 0 = all.
    pub max_docs: usize,
    /// Tokens read per validation document; 0 = all.
    pub max_tokens_per_doc: usize,
    /// Documents evaluated in parallel.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { every: 200, max_docs: 0, max_tokens_per_doc: 0, batch_size: 4 }
    }
}

/// `[checkpoint]`: where the run lives and how often it is saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// The run folder (config, metrics, checkpoints).
    pub dir: PathBuf,
    /// Save every this many steps (0 = only at the end).
    pub every: u64,
    /// Checkpoints kept besides `best`.
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("runs/default"), every: 500, keep_last: 3 }
    }
}

impl DataConfig {
    /// No training data (the record of a model that was never trained here, e.g. an imported
    /// one); every other field at its default.
    pub fn none() -> Self {
        Self {
            prepared: PathBuf::new(),
            batch_size: d_batch(),
            seq_len: d_seq_len(),
            streaming: false,
            seed: 0,
            loss_on: LossOn::All,
            align_documents: false,
        }
    }
}

fn d_batch() -> usize {
    4
}
fn d_seq_len() -> usize {
    2048
}

/// Sets `dotted.key = value` in a TOML table; `value` is parsed as TOML, else taken as a string.
fn set_override(root: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set {assignment}: expected KEY=VALUE, e.g. --set train.steps=20"))?;
    let key = key.trim();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).ok_or_else(|| format!("--set {assignment}: empty key"))?;
    let mut table = root;
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("--set {key}: `{part}` is not a section"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

impl RunConfig {
    /// Reads `path`, applies `overrides` (`section.key=value`), and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig, String> {
        let config: RunConfig = infini_data::toml_file::read(path)?;
        config.with_overrides(overrides, &path.display().to_string())
    }

    /// This config with `overrides` applied and validated; `origin` names it in errors.
    pub fn with_overrides(self, overrides: &[String], origin: &str) -> Result<RunConfig, String> {
        let config = if overrides.is_empty() {
            self
        } else {
            let mut table = toml::Table::try_from(&self).map_err(|e| e.to_string())?;
            for o in overrides {
                set_override(&mut table, o)?;
            }
            table.try_into::<RunConfig>().map_err(|e| format!("--set: {}", e.message().replace('\n', " ")))?
        };
        config.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(config)
    }

    /// The resolved config as TOML text (saved in the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Segments per training example.
    pub fn segments_per_example(&self) -> usize {
        self.data.seq_len / self.model.segment_len
    }

    /// Segments per backprop window.
    pub fn window_segments(&self) -> usize {
        match self.train.tbptt_segments {
            0 => self.segments_per_example(),
            k => k.min(self.segments_per_example()),
        }
    }

    /// The backprop window of a training step.
    pub fn window(&self) -> crate::backprop::Window {
        let repeat = (self.train.write_repeat_max > 1.0)
            .then_some(crate::backprop::WriteRepeat { max: self.train.write_repeat_max, seed: 0, first_stream: 0 });
        crate::backprop::Window { segments: self.window_segments(), recompute: self.train.checkpointing, repeat }
    }

    /// Checks every section; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate().map_err(|e| e.to_string())?;
        let (d, t, e, c) = (&self.data, &self.train, &self.eval, &self.checkpoint);
        let n = self.model.segment_len;
        let positive = [
            ("data.batch_size", d.batch_size as u64),
            ("data.seq_len", d.seq_len as u64),
            ("train.grad_accum", t.grad_accum as u64),
            ("eval.batch_size", e.batch_size as u64),
            ("checkpoint.keep_last", c.keep_last as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("{key}: must be at least 1, got 0"));
            }
        }
        if d.align_documents && d.streaming {
            return Err("data.align_documents: examples that start a new document cannot also carry the memory on (data.streaming); set one of them to false".into());
        }
        if d.seq_len % n != 0 {
            return Err(format!("data.seq_len: {} is not a multiple of model.segment_len ({n})", d.seq_len));
        }
        if self.model.memory.has_memory() && self.segments_per_example() == 1 {
            // One segment per example: without streaming the memory is always empty when read; with
            // streaming it is carried but detached at every example, so its writes never learn.
            return Err(format!(
                "data.seq_len: {} is one segment (model.segment_len = {n}), so the memory's writes never get a gradient{}; use data.seq_len ≥ {} (two segments) or model.memory = \"none\"",
                d.seq_len,
                if d.streaming { " (streaming detaches it between examples)" } else { " and it is never read" },
                2 * n
            ));
        }
        if self.model.memory.has_memory() && self.window_segments() == 1 {
            return Err(format!(
                "train.tbptt_segments: 1 detaches the memory after every segment, so memory writes never get a gradient; use ≥ 2 or 0 (all {} segments)",
                self.segments_per_example()
            ));
        }
        if t.checkpointing && self.model.dropout > 0.0 {
            return Err(format!(
                "train.checkpointing: recomputing segments needs the same dropout masks twice; set model.dropout = 0 (it is {}) or checkpointing = false",
                self.model.dropout
            ));
        }
        if t.warmup_steps > t.steps {
            return Err(format!("train.warmup_steps: {} is more than train.steps ({}); the learning rate would never reach train.lr", t.warmup_steps, t.steps));
        }
        for (key, v) in [("train.lr", t.lr), ("train.eps", t.eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key}: must be a positive number, got {v}"));
            }
        }
        for (key, v) in [("train.weight_decay", t.weight_decay), ("train.grad_clip", t.grad_clip), ("train.gate_lr_multiplier", t.gate_lr_multiplier)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key}: must be ≥ 0, got {v}"));
            }
        }
        if !(t.write_repeat_max.is_finite() && t.write_repeat_max >= 1.0) {
            return Err(format!("train.write_repeat_max: must be ≥ 1 (1 = every memory write once), got {}", t.write_repeat_max));
        }
        for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2), ("train.min_lr_ratio", t.min_lr_ratio)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{key}: must be in [0, 1], got {v}"));
            }
        }
        Ok(())
    }
}
