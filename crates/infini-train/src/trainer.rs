//! The training loop: truncated backprop through the memory across segments.
//!
//! A step takes `grad_accum` examples of L tokens (L/N segments) per stream. Memory starts empty
//! at each example (or is carried over in streaming mode); every `tbptt_segments` segments the
//! summed loss is backpropagated through the whole window — memory writes included — then the
//! memory is detached and carried on. Losses are divided by the step's total number of target
//! tokens, so the gradient is that of the per-token mean.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use infini_data::progress::{Progress, human_duration};
use infini_data::{PreparedData, SegmentBatch, SegmentStream, Split, SplitData};
use infini_model::{InfiniLm, MemoryState};
use serde_json::json;

use crate::checkpoint::{self, Snapshot, TrainState};
use crate::config::{LossOn, RunConfig};
use crate::run_lock::RunLock;
use crate::eval::{EvalOptions, EvalResult, evaluate};
use crate::backprop::{StepGrads, backprop_example, mean_memory_norm, memory_is_finite};
use crate::optim::{build, clip_global_norm_reading, learning_rate};
use crate::parallel::data_parallel;

/// Set by Ctrl-C: the loop saves a checkpoint and stops after the current step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How a run starts.
pub enum Start {
    /// Fresh weights.
    Fresh,
    /// Continue a run exactly from its latest checkpoint.
    Resume,
    /// Fresh run (new config, data, schedule) from the weights of a checkpoint.
    InitFrom(PathBuf),
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Steps completed.
    pub step: u64,
    /// Loss of every step taken by this process, in order.
    pub losses: Vec<f64>,
    /// The last validation, if any.
    pub validation: Option<EvalResult>,
    /// Path of the last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// Mean training tokens read per second by this process (every input position, also those
    /// outside the loss).
    pub tokens_per_s: f64,
}

/// Options that are not part of the config.
pub struct RunOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Compute device (without autodiff; the trainer adds it).
    pub device: Device,
    /// More devices for data parallelism (each takes an equal share of the streams); empty for one.
    pub replicas: Vec<Device>,
    /// Stop after this many steps of this process even if the config asks for more (tests).
    pub max_steps_this_run: Option<u64>,
    /// Test hook: make the loss of the steps in this range non-finite.
    pub poison_steps: Option<std::ops::Range<u64>>,
}

struct Trainer {
    config: RunConfig,
    run_dir: PathBuf,
    device: Device,
    model: InfiniLm,
    optimizer: ModuleOptimizer,
    stream: SegmentStream,
    validation: Option<Arc<SplitData>>,
    state: TrainState,
    carried: Option<MemoryState>,
    metrics: fs::File,
    last_checkpoint: Option<PathBuf>,
    replicas: Vec<Device>,
    /// Mean sigmoid(β) per layer, read with the last step's loss (for metrics.jsonl).
    last_gates: Vec<f64>,
    /// The run folder's lock, held while training (set once set-up succeeded).
    _lock: Option<RunLock>,
}

fn prepared_data(config: &RunConfig) -> Result<(PreparedData, Arc<SplitData>, Option<Arc<SplitData>>), String> {
    let data = PreparedData::open(&config.data.prepared).map_err(|e| e.to_string())?;
    if data.manifest.vocab_size != config.model.vocab_size {
        return Err(format!(
            "model.vocab_size is {} but the tokenizer of {} has {} ids: set model.vocab_size = {}",
            config.model.vocab_size,
            config.data.prepared.display(),
            data.manifest.vocab_size,
            data.manifest.vocab_size
        ));
    }
    let train = Arc::new(data.split(Split::Train).map_err(|e| e.to_string())?);
    let validation = data.split(Split::Validation).map_err(|e| e.to_string())?;
    let validation = (!validation.is_empty()).then(|| Arc::new(validation));
    Ok((data, train, validation))
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run rewrites what came after).
fn truncate_metrics(path: &Path, step: u64) -> Result<(), String> {
    let Ok(text) = fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    infini_data::fsutil::atomic_write(path, kept.as_bytes()).map_err(|e| e.to_string())
}

impl Trainer {
    /// Locks the run folder first (a second process on it is refused before it reads anything);
    /// a folder this call created is removed again if setting up fails.
    fn new(config: RunConfig, start: Start, options: &RunOptions) -> Result<Self, String> {
        let created = !options.run_dir.exists();
        let lock = RunLock::acquire(&options.run_dir)?;
        match Self::set_up(config, start, options) {
            Ok(trainer) => Ok(Self { _lock: Some(lock), ..trainer }),
            Err(e) => {
                lock.abandon(&options.run_dir);
                if created {
                    let _ = fs::remove_dir_all(&options.run_dir);
                }
                Err(e)
            }
        }
    }

    fn set_up(mut config: RunConfig, start: Start, options: &RunOptions) -> Result<Self, String> {
        let run_dir = options.run_dir.clone();
        let device = options.device.clone().autodiff();
        let (data, train, validation) = prepared_data(&config)?;
        // A relative data.prepared is relative to the folder `infini train` runs in; the run
        // records it absolutely so that eval, passkey and --resume find it from anywhere.
        if let Ok(path) = std::path::absolute(&config.data.prepared) {
            config.data.prepared = path;
        }
        let (b, n) = (config.data.batch_size, config.model.segment_len);

        device.seed(config.train.seed);
        // Parameters are initialised lazily; materialise them now, in one order, so that the seed
        // alone decides them (data-parallel replicas would otherwise draw them concurrently).
        let mut model = config.model.init(&device).materialize();
        let mut optimizer = build(&config.train);
        let mut state = TrainState {
            step: 0,
            tokens: 0,
            cursor: SegmentStream::shuffled(train.clone(), b, n, config.data.seed).map_err(|e| e.to_string())?.cursor().clone(),
            best_val_loss: None,
            skipped_steps: 0,
            bad_in_row: 0,
            seconds: 0.0,
            tokenizer_hash: data.manifest.tokenizer_hash.clone(),
            memory_shapes: Vec::new(),
        };
        let mut carried = None;
        match start {
            Start::Fresh => {
                if !checkpoint::list(&run_dir).is_empty() {
                    return Err(format!(
                        "{} already holds checkpoints: continue it with --resume {}, or choose another run folder",
                        run_dir.display(),
                        run_dir.display()
                    ));
                }
            }
            Start::Resume => {
                let (_, latest) = checkpoint::list(&run_dir)
                    .pop()
                    .ok_or_else(|| format!("{} holds no checkpoint to resume from", run_dir.display()))?;
                let (saved_config, saved) = checkpoint::read_meta(&latest)?;
                let diffs = checkpoint::shape_differences(&saved_config.model, &config.model);
                if !diffs.is_empty() {
                    return Err(format!("cannot resume with a different model shape ({}); use --init-from instead", diffs.join(", ")));
                }
                // The saved data cursor fixes the streams: a changed count or order would be ignored.
                for (key, was, now) in [
                    ("data.batch_size", saved_config.data.batch_size as u64, config.data.batch_size as u64),
                    ("data.seed", saved_config.data.seed, config.data.seed),
                ] {
                    if was != now {
                        return Err(format!(
                            "{key} cannot change on --resume ({was} → {now}): the saved data cursor fixes it; start a new run with --init-from {} to change it",
                            run_dir.display()
                        ));
                    }
                }
                if saved.tokenizer_hash != state.tokenizer_hash {
                    return Err(format!("{} was trained on data of another tokenizer; resume with the same data.prepared", run_dir.display()));
                }
                model = checkpoint::load_model(&latest, model)?;
                optimizer = checkpoint::load_optimizer(&latest, optimizer)?;
                carried = checkpoint::load_memory(&latest, &config.model, &saved, &device)?;
                state = saved;
                eprintln!("resuming {} from step {}", run_dir.display(), state.step);
            }
            Start::InitFrom(path) => {
                let ckpt = checkpoint::resolve(&path)?;
                let (saved_config, _) = checkpoint::read_meta(&ckpt)?;
                let diffs = checkpoint::shape_differences(&saved_config.model, &config.model);
                if !diffs.is_empty() {
                    return Err(format!(
                        "cannot initialise from {}: its model has a different shape ({}); keep those fields as they were",
                        ckpt.display(),
                        diffs.join(", ")
                    ));
                }
                model = checkpoint::load_model(&ckpt, model)?;
                eprintln!("initialised weights from {}", ckpt.display());
                // Not shapes, but they change what the weights compute: allowed (a longer context
                // may want another RoPE base), said out loud.
                let (was, now) = (&saved_config.model, &config.model);
                for (key, a, b) in [("rope_theta", was.rope_theta, now.rope_theta), ("norm_eps", was.norm_eps, now.norm_eps)] {
                    if a != b {
                        eprintln!("warning: model.{key} is {b} here but {a} in {}: the weights were trained with {a}", ckpt.display());
                    }
                }
            }
        }
        let answers = config.data.loss_on == LossOn::Answers;
        let stream = SegmentStream::resume(train, n, state.cursor.clone())
            .and_then(|s| s.answers_only(answers))
            .map_err(|e| format!("{}: {e}", config.data.prepared.display()))?;
        let compute = config.train.precision.compute();
        if let Some(dtype) = compute
            && !device.supports_dtype(dtype)
        {
            return Err(format!("train.precision = \"{dtype:?}\" is not supported by this backend; use \"f32\""));
        }
        let model = model.with_compute(compute);

        infini_data::fsutil::atomic_write(&run_dir.join("config.toml"), config.to_toml().as_bytes()).map_err(|e| e.to_string())?;
        let metrics_path = run_dir.join("metrics.jsonl");
        truncate_metrics(&metrics_path, state.step)?;
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| format!("cannot open {}: {e}", metrics_path.display()))?;
        let replicas: Vec<Device> = options.replicas.iter().map(|d| d.clone().autodiff()).collect();
        if !replicas.is_empty() {
            let devices = replicas.len() + 1;
            if config.data.batch_size % devices != 0 {
                return Err(format!(
                    "data.batch_size ({}) must be a multiple of the number of devices ({devices}) for data parallelism",
                    config.data.batch_size
                ));
            }
            if config.data.streaming {
                return Err("data.streaming = true is not supported with several devices yet; use one device".into());
            }
        }
        Ok(Self { config, run_dir, device, model, optimizer, stream, validation, state, carried, metrics, last_checkpoint: None, replicas, last_gates: Vec::new(), _lock: None })
    }

    fn log(&mut self, record: serde_json::Value) -> Result<(), String> {
        writeln!(self.metrics, "{record}").map_err(|e| format!("cannot write metrics.jsonl: {e}"))
    }

    /// One optimizer step: (loss, gradient norm, loss targets, input tokens read, memory norm,
    /// applied). A step whose loss or gradient is not finite is not applied.
    fn step(&mut self, poison: bool) -> (f64, f64, u64, u64, Option<f64>, bool) {
        let k = self.config.segments_per_example();
        let window = self.config.window();
        let align = self.config.data.align_documents;
        let examples: Vec<Vec<SegmentBatch>> = (0..self.config.train.grad_accum)
            .map(|_| if align { self.stream.next_aligned_example(k) } else { self.stream.next_example(k) })
            .collect();
        let targets: usize = examples.iter().flatten().map(SegmentBatch::num_targets).sum();
        // Every input position is computed, also those outside the loss (data.loss_on = "answers").
        let inputs_read: usize = examples.iter().flatten().map(|s| s.batch * s.segment_len).sum();
        let scale = if poison { f64::NAN } else { 1.0 / targets.max(1) as f64 };
        // Dropout draws from the device RNG: seeding it per step keeps resumed runs identical.
        let step_seed = self.config.train.seed.wrapping_add(self.state.step.wrapping_mul(0x9e37_79b9));
        self.device.seed(step_seed);
        // Replicas on devices of their own (GPUs) have RNGs of their own; a replica on the main
        // device (Flex) shares its RNG and must not reseed it.
        for (i, replica) in self.replicas.iter().enumerate().filter(|(_, r)| **r != self.device) {
            replica.seed(step_seed.wrapping_add((i as u64 + 1).wrapping_mul(0x6a09_e667_f3bc_c909)));
        }

        let carried_before = self.carried.clone();
        let (loss, memory, mut grads) = if self.replicas.is_empty() {
            let mut accumulator = StepGrads::new();
            let mut losses = Vec::new();
            let mut last = None;
            for (e, example) in examples.iter().enumerate() {
                let b = example[0].batch;
                let window = window.for_example(step_seed, e);
                let memory = match (self.config.data.streaming, self.carried.take()) {
                    (true, Some(m)) => m,
                    _ => MemoryState::empty(&self.config.model, b, &self.device),
                };
                let (loss, memory) = backprop_example(&self.model, example, memory, window, scale, &self.device, &mut accumulator);
                losses.push(loss);
                if self.config.data.streaming {
                    self.carried = Some(memory.clone());
                }
                last = Some(memory);
            }
            (Tensor::cat(losses, 0).sum(), last, accumulator.grads(&self.model))
        } else {
            let (model, config) = (&self.model, &self.config);
            data_parallel(model, &config.model, &self.device, &self.replicas, config.data.batch_size, &examples, window, step_seed, scale)
        };
        // The one read of the step, and its one wait for the device: loss, gradient norm (both
        // needed before the update, to skip a non-finite step), the memory norm and the gates
        // (for metrics.jsonl), in one transfer. Nothing else in a step reads the device: the
        // segments' uploads and every kernel are queued, and on GPU backends the optimizer's
        // kernels run while the host cuts and uploads the next step's example.
        let memory_norm = memory.as_ref().and_then(mean_memory_norm);
        let gates = self.gate_means();
        let mut also = vec![loss];
        also.extend(memory_norm.clone());
        also.extend(gates.clone());
        let (norm, read) = clip_global_norm_reading(&self.model, &mut grads, self.config.train.grad_clip, &also);
        let loss_total = read[0];
        let memory_norm = memory_norm.map(|_| read[1]);
        self.last_gates = read[read.len() - gates.len()..].to_vec();
        let ok = loss_total.is_finite() && norm.is_finite();
        if ok {
            let lr = learning_rate(&self.config.train, self.state.step);
            self.model = self.optimizer.step(lr, self.model.clone(), grads);
        } else if let Some(memory) = &self.carried
            && !memory_is_finite(memory)
        {
            // Never let a non-finite value into the weights or the carried memory. The memory the
            // forward pass wrote is kept when finite (the streams have moved past this example);
            // else the one from before the step, so that the next example does not continue
            // mid-document with an empty memory.
            self.carried = carried_before.filter(memory_is_finite);
        }
        (loss_total, norm, targets as u64, inputs_read as u64, memory_norm, ok)
    }

    /// Mean sigmoid(β) per layer, as one-value tensors still on the device.
    fn gate_means(&self) -> Vec<Tensor<1>> {
        self.model.blocks.iter().filter_map(|b| b.attn.beta.as_ref().map(|beta| sigmoid(beta.val()).mean())).collect()
    }

    /// Evaluates on the validation split and logs it (not to be confused with `RunConfig::validate`,
    /// which checks a config).
    fn run_validation(&mut self, progress: &Progress) -> Result<Option<EvalResult>, String> {
        let Some(split) = self.validation.clone() else { return Ok(None) };
        let e = &self.config.eval;
        let options =
            EvalOptions {
                max_docs: e.max_docs,
                max_tokens_per_doc: e.max_tokens_per_doc,
                batch_size: e.batch_size,
                progress: false,
                answers_only: self.config.data.loss_on == LossOn::Answers,
            };
        let model = self.model.valid();
        let device = self.device.clone().without_autodiff();
        let result = evaluate(&model, &self.config.model, split, &options, &device).map_err(|e| e.to_string())?;
        progress.println(format!(
            "step {}: validation loss {:.4}, perplexity {:.2} ({} tokens, {:.1}s)",
            self.state.step, result.loss, result.perplexity, result.tokens, result.seconds
        ));
        self.log(json!({
            "kind": "validation", "step": self.state.step, "loss": result.loss, "perplexity": result.perplexity,
            "word_perplexity": result.word_perplexity, "bits_per_byte": result.bits_per_byte, "tokens": result.tokens,
        }))?;
        Ok(Some(result))
    }

    fn save(&mut self, best: bool) -> Result<PathBuf, String> {
        self.state.cursor = self.stream.cursor().clone();
        let snapshot = Snapshot {
            model: &self.model,
            optimizer: &self.optimizer,
            state: &self.state,
            config: &self.config,
            memory: self.carried.as_ref(),
        };
        let path = checkpoint::save(&self.run_dir, &snapshot)?;
        if best {
            checkpoint::mark_best(&self.run_dir, &path)?;
        }
        checkpoint::prune(&self.run_dir, self.config.checkpoint.keep_last);
        self.last_checkpoint = Some(path.clone());
        Ok(path)
    }
}

/// Trains as `config` says, starting as `start` says, until `train.steps` or a stop signal:
/// Ctrl-C, SIGTERM (what SLURM, Kubernetes and systemd send before a kill) or SIGHUP finish the
/// step, save a checkpoint and return with `Summary::interrupted` set; a second one quits at once.
pub fn train(config: RunConfig, start: Start, options: RunOptions) -> Result<Summary, String> {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (a second signal quits at once)");
    });
    INTERRUPTED.store(false, Ordering::SeqCst);
    let mut t = Trainer::new(config, start, &options)?;
    let total = t.config.train.steps;
    let first = t.state.step;
    let last = options.max_steps_this_run.map_or(total, |m| (first + m).min(total));
    eprintln!(
        "training {} parameters on {} tokens/step ({} streams × {} tokens × {} accum, {} segments of {}, backprop every {})",
        t.config.model.num_params(),
        t.config.data.batch_size * t.config.data.seq_len * t.config.train.grad_accum,
        t.config.data.batch_size,
        t.config.data.seq_len,
        t.config.train.grad_accum,
        t.config.segments_per_example(),
        t.config.model.segment_len,
        t.config.window_segments()
    );
    let mut progress = Progress::new("training", "steps", Some(total)).with_plain_every(t.config.train.log_every);
    progress.set_position(first);
    let mut summary =
        Summary { step: first, losses: Vec::new(), validation: None, checkpoint: None, interrupted: false, tokens_per_s: 0.0 };
    let (run_start, mut run_tokens) = (Instant::now(), 0u64);
    let every = |n: u64, step: u64| n > 0 && step % n == 0;

    while t.state.step < last {
        let started = Instant::now();
        let poison = options.poison_steps.as_ref().is_some_and(|r| r.contains(&t.state.step));
        let (loss, grad_norm, tokens, read, memory_norm, ok) = t.step(poison);
        let seconds = started.elapsed().as_secs_f64();
        let lr = learning_rate(&t.config.train, t.state.step);
        t.state.step += 1;
        t.state.tokens += tokens;
        t.state.seconds += seconds;
        // Throughput counts the tokens the model read, not only those in the loss.
        run_tokens += read;
        let tokens_per_s = read as f64 / seconds.max(1e-9);
        if ok {
            t.state.bad_in_row = 0;
        } else {
            t.state.bad_in_row += 1;
            t.state.skipped_steps += 1;
            progress.println(format!(
                "warning: step {} has a non-finite loss ({loss}) or gradient norm ({grad_norm}): skipped ({} in a row, {} in total)",
                t.state.step, t.state.bad_in_row, t.state.skipped_steps
            ));
            if t.state.bad_in_row > t.config.train.max_bad_steps {
                let last_good = checkpoint::list(&t.run_dir).pop().map(|(_, p)| p.display().to_string());
                return Err(format!(
                    "stopped: {} consecutive non-finite steps (train.max_bad_steps = {}); lower train.lr or check the data. Last good checkpoint: {}",
                    t.state.bad_in_row,
                    t.config.train.max_bad_steps,
                    last_good.unwrap_or_else(|| "none".into())
                ));
            }
        }
        summary.losses.push(loss);
        let gates = t.last_gates.clone();
        let record = json!({
            "kind": "train", "step": t.state.step, "tokens": t.state.tokens, "loss": loss, "lr": lr,
            "grad_norm": grad_norm, "tokens_per_s": tokens_per_s, "skipped": !ok,
            "gate_mean": gates, "memory_norm": memory_norm,
        });
        t.log(record)?;
        progress.set_position(t.state.step);
        progress.set_message(format!("loss {loss:.4} | lr {lr:.2e} | {tokens_per_s:.0} tok/s"));

        let end = t.state.step == last;
        let mut best = false;
        if every(t.config.eval.every, t.state.step) || (end && t.state.step == total) {
            if let Some(v) = t.run_validation(&progress)? {
                best = t.state.best_val_loss.is_none_or(|b| v.loss < b);
                if best {
                    t.state.best_val_loss = Some(v.loss);
                }
                summary.validation = Some(v);
            }
        }
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if every(t.config.checkpoint.every, t.state.step) || end || interrupted || best {
            let path = t.save(best)?;
            if interrupted {
                progress.println(format!("saved {}", path.display()));
                summary.interrupted = true;
                break;
            }
        }
    }
    summary.step = t.state.step;
    summary.checkpoint = t.last_checkpoint.clone();
    summary.tokens_per_s = run_tokens as f64 / run_start.elapsed().as_secs_f64().max(1e-9);
    progress.finish();
    eprintln!(
        "done: step {} of {}, {:.0} tokens/s, {} in this run{}",
        summary.step,
        total,
        summary.tokens_per_s,
        human_duration(run_start.elapsed().as_secs_f64()),
        summary.checkpoint.as_ref().map(|p| format!(", checkpoint {}", p.display())).unwrap_or_default()
    );
    Ok(summary)
}
