//! `infini bench …`: throughput measurements with JSON output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use infini_data::shards::PrepareOptions;
use infini_data::{PreparedData, SegmentStream, Split, Tokenizer, open_dataset, prepare};
use serde_json::json;

use crate::data::DatasetArgs;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Evaluation tokens/s and peak RSS on one synthetic document per length, each in a fresh process.
    Eval {
        /// Model config (random weights) ...
        #[arg(long, required_unless_present = "checkpoint")]
        config: Option<PathBuf>,
        /// ... or a checkpoint.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Document lengths (K = 1024, M = 1024²).
        #[arg(long, default_value = "8K,64K,1M")]
        lengths: String,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compute backend: flex, wgpu or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
    },
    /// One length of `bench eval` (run by it in a child process).
    #[command(hide = true)]
    EvalOne {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        length: usize,
        #[arg(long, default_value = "flex")]
        backend: String,
    },
    /// Training tokens/s, step time, peak RSS and model GFLOP/s of a run config's model, example
    /// shape, TBPTT window and optimizer, on synthetic tokens (no data needed).
    Train {
        /// Run config (configs/bench.toml is the side-by-side benchmark's).
        #[arg(long)]
        config: PathBuf,
        /// Override config values, e.g. --set model.memory=delta (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Timed steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Untimed steps first (kernel compilation, allocator warm-up).
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compute backend: flex, wgpu or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// The device's peak TFLOP/s in the config's compute type (e.g. 989 for an H100 or H200
        /// in bf16, dense): adds the model FLOPs utilisation (MFU) to the results.
        #[arg(long)]
        peak_tflops: Option<f64>,
    },
    /// f32 matrix-product GFLOP/s of the backend, in isolation: square sizes and the shapes of
    /// a training step's output head (tokens × d_model × vocab).
    Matmul {
        /// Square sizes.
        #[arg(long, default_value = "512,1024,2048")]
        sizes: String,
        /// Also the three products of the output head for this many tokens, d_model and vocab
        /// ("2048x256x32000": forward, weight gradient, input gradient).
        #[arg(long, default_value = "2048x256x32000")]
        head: String,
        /// Timed repeats (the best is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compute backend: flex, wgpu or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
    },
    /// Tokens/s of `data prepare` (into a temporary folder) and of the segment loader.
    Data {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Tokenizer for the preparation.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Parallel streams of the loader.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per segment.
        #[arg(long, default_value_t = 2048)]
        segment_len: usize,
        /// Seconds to run the loader.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Peak resident set size of this process in MiB (Linux: VmHWM), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The CPU: model name, the SIMD extensions the matrix kernels can use, and the threads.
fn cpu_description() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| cpuinfo.lines().find(|l| l.starts_with(key)).and_then(|l| l.split(':').nth(1)).map(|v| v.trim().to_string());
    // The extensions the CPU reports (x86: /proc/cpuinfo flags; the gemm kernels pick among them).
    const WANTED: [&str; 14] = [
        "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
        "amx_bf16", "amx_int8",
    ];
    let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
    let simd: Vec<&str> = flags.split_whitespace().filter(|f| WANTED.contains(f) || ["neon", "asimd", "sve", "sve2"].contains(f)).collect();
    json!({
        "model": field("model name").or_else(|| field("Model")).unwrap_or_else(|| "unknown".into()),
        "vendor": field("vendor_id").unwrap_or_else(|| "unknown".into()),
        "simd": simd,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "threads_per_core": field("siblings").zip(field("cpu cores")).and_then(|(s, c)| Some(s.parse::<f64>().ok()? / c.parse::<f64>().ok()?)),
        "rayon_num_threads_env": std::env::var("RAYON_NUM_THREADS").ok(),
        // What infini's own host loops were compiled for here (INFINI_SIMD caps it).
        "host_loops_isa": format!("{:?}", infini_model::host::simd::isa()).to_lowercase(),
    })
}

/// Process CPU time (user + system, seconds) and page faults (minor + major) so far.
fn cpu_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime) + secs(usage.ru_stime), (usage.ru_minflt + usage.ru_majflt) as u64)
}

/// Prints a result and writes it to `path` (atomically) when given.
fn write_json(result: &serde_json::Value, path: Option<PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(result)?;
    println!("{text}");
    if let Some(path) = path {
        infini_data::fsutil::atomic_write(&path, format!("{text}\n").as_bytes())?;
    }
    Ok(())
}

/// The model to benchmark: a checkpoint's, or a freshly initialised one from a config.
fn bench_model(config: &Option<PathBuf>, checkpoint: &Option<PathBuf>, device: &burn::tensor::Device) -> Result<(infini_model::InfiniLm, infini_model::ModelConfig)> {
    match (checkpoint, config) {
        (Some(ckpt), _) => {
            let (model, config, _, _) = infini_train::checkpoint::load_for_inference(ckpt, device).map_err(|e| anyhow!(e))?;
            Ok((model, config.model))
        }
        (None, Some(path)) => {
            use infini_data::toml_file::{ModelTable, read};
            let m = read::<ModelTable<infini_model::ModelConfig>>(path).map_err(|e| anyhow!(e))?.model;
            m.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
            device.seed(0);
            Ok((m.init(device), m))
        }
        (None, None) => Err(anyhow!("give --config or --checkpoint")),
    }
}

/// Evaluates one synthetic document of `length` tokens, generated segment by segment (so the
/// document itself takes no memory), with the memory carried across segments as `infini eval`
/// does; returns tokens/s and peak RSS.
fn eval_one(config: &Option<PathBuf>, checkpoint: &Option<PathBuf>, length: usize, backend: &str) -> Result<serde_json::Value> {
    let device = infini_train::backend::device(backend).map_err(|e| anyhow!(e))?;
    let (model, mc) = bench_model(config, checkpoint, &device)?;
    let n = mc.segment_len;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_token = move || (infini_data::stream::splitmix(&mut rng) % mc.vocab_size as u64) as u32;
    let rss_before = peak_rss_mib();
    let memory = infini_model::MemoryState::empty(&mc, 1, &device);
    let (start, mut nll, mut done) = (Instant::now(), 0.0, 0usize);
    let mut carry = next_token();
    let mut generated = 0usize;
    // Segments are generated as they are read, so the document itself takes no memory.
    let segments = std::iter::from_fn(|| {
        if generated + 1 >= length {
            return None;
        }
        let take = (length - 1 - generated).min(n);
        let mut tokens = vec![carry];
        tokens.extend((0..take).map(|_| next_token()));
        carry = tokens[take];
        let mut segment = infini_data::SegmentBatch {
            batch: 1,
            segment_len: n,
            inputs: vec![0; n],
            targets: vec![0; n],
            mask: vec![0.0; n],
            reset: vec![generated == 0],
            docs: vec![Some(0)],
        };
        segment.inputs[..take].copy_from_slice(&tokens[..take]);
        segment.targets[..take].copy_from_slice(&tokens[1..]);
        segment.mask[..take].fill(1.0);
        generated += take;
        Some(segment)
    });
    infini_train::eval::read_segments(&model, memory, segments, &device, |segment, loss| {
        nll += loss.sum().into_scalar::<f64>();
        done += segment.num_targets();
    });
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({
        "length": length, "tokens": done, "seconds": seconds, "tokens_per_s": done as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(), "rss_before_eval_mib": rss_before, "loss": nll / done.max(1) as f64,
    }))
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::EvalOne { config, checkpoint, length, backend } => {
            println!("{}", eval_one(&config, &checkpoint, length, &backend)?);
            Ok(())
        }
        BenchCommand::Eval { config, checkpoint, lengths, json, backend } => {
            let lengths = infini_train::generate::parse_lengths(&lengths).map_err(|e| anyhow!("--lengths: {e}"))?;
            let exe = std::env::current_exe()?;
            let mut results = Vec::new();
            for length in lengths {
                // A fresh process per length, so each peak RSS is its own.
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["bench", "eval-one", "--length", &length.to_string(), "--backend", &backend]);
                if let Some(c) = &config {
                    cmd.arg("--config").arg(c);
                }
                if let Some(c) = &checkpoint {
                    cmd.arg("--checkpoint").arg(c);
                }
                let out = cmd.output()?;
                if !out.status.success() {
                    return Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()));
                }
                let line: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                eprintln!(
                    "{length:>9} tokens: {:>8.0} tokens/s, peak RSS {:.0} MiB",
                    line["tokens_per_s"].as_f64().unwrap_or(0.0),
                    line["peak_rss_mib"].as_f64().unwrap_or(0.0)
                );
                results.push(line);
            }
            write_json(&json!({ "eval": results, "backend": backend,
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }), json)
        }
        BenchCommand::Train { config, overrides, steps, warmup, json, backend, peak_tflops } => {
            if steps == 0 {
                return Err(anyhow!("--steps must be at least 1"));
            }
            if peak_tflops.is_some_and(|p| !(p > 0.0)) {
                return Err(anyhow!("--peak-tflops must be a positive number of TFLOP/s, e.g. 989 for an H100 in bf16"));
            }
            let run = infini_train::RunConfig::load(&config, &overrides).map_err(|e| anyhow!(e))?;
            let device = infini_train::backend::device(&backend).map_err(|e| anyhow!(e))?;
            // CPU time and page faults of each timed step, from the process's counters.
            let (mut usage, mut per_step) = (cpu_usage(), Vec::new());
            let bench = infini_train::bench::train_steps(&run, steps, warmup, &device, |i, seconds, loss| {
                let kind = if i < warmup { "warm-up" } else { "timed" };
                eprintln!("step {}/{} ({kind}): {seconds:.3} s, loss {loss:.4}", i + 1, warmup + steps);
                let now = cpu_usage();
                if i >= warmup {
                    per_step.push(((now.0 - usage.0) / seconds, now.1 - usage.1));
                }
                usage = now;
            }).map_err(|e| anyhow!(e))?;
            let mut times = bench.step_seconds.clone();
            times.sort_by(f64::total_cmp);
            let median = |v: &[f64]| if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
            let tokens = bench.tokens_per_step as f64;
            let step_median = median(&times);
            let flop = infini_train::bench::flops_per_token(&run.model);
            let mfu = peak_tflops.map(|peak| flop * tokens / step_median / (peak * 1e12));
            let mut phases = serde_json::Map::new();
            for (i, phase) in infini_train::phases::ALL.iter().enumerate() {
                let mut v: Vec<f64> = bench.phase_seconds.iter().map(|p| p[i]).collect();
                v.sort_by(f64::total_cmp);
                phases.insert(phase.name().into(), json!(median(&v)));
            }
            let mut busy: Vec<f64> = per_step.iter().map(|p| p.0).collect();
            busy.sort_by(f64::total_cmp);
            let mut faults: Vec<f64> = per_step.iter().map(|p| p.1 as f64).collect();
            faults.sort_by(f64::total_cmp);
            let result = json!({
                "config": config, "memory": run.model.memory, "backend": backend,
                "cpu": cpu_description(),
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "phases_s_median": phases,
                "phases_note": "forward = embedding and blocks with the memory; head = output head and vocabulary loss with their gradients; backward = autodiff through the blocks; optimizer = clipping and update. Meaningful on flex (CPU) only.",
                "cpu_seconds_per_wall_second_median": median(&busy),
                "page_faults_per_step_median": median(&faults),
                "parameters": run.model.num_params(), "tokens_per_step": bench.tokens_per_step,
                "steps": steps, "warmup": warmup,
                "step_s": {"min": times[0], "median": step_median, "max": times[times.len() - 1], "all": bench.step_seconds},
                "tokens_per_s": {"min": tokens / times[times.len() - 1], "median": tokens / step_median, "max": tokens / times[0]},
                "peak_rss_mib": peak_rss_mib(),
                "flop_per_token": flop, "flop_formula": infini_train::bench::FLOP_FORMULA,
                "gflop_per_s": flop * tokens / step_median / 1e9,
                "peak_tflops": peak_tflops,
                "mfu": mfu,
                "losses": bench.losses,
            });
            let mfu = mfu.map(|m| format!(", MFU {:.1}%", 100.0 * m)).unwrap_or_default();
            eprintln!(
                "{} tokens/step: median {:.3} s/step, {:.0} tokens/s ({:.0}–{:.0}), {:.1} GFLOP/s{mfu}, peak RSS {:.0} MiB",
                bench.tokens_per_step,
                step_median,
                tokens / step_median,
                tokens / times[times.len() - 1],
                tokens / times[0],
                flop * tokens / step_median / 1e9,
                peak_rss_mib().unwrap_or(0.0)
            );
            write_json(&result, json)
        }
        BenchCommand::Matmul { sizes, head, repeats, json, backend } => {
            let device = infini_train::backend::device(&backend).map_err(|e| anyhow!(e))?;
            let parse = |s: &str, what: &str| -> Result<Vec<usize>> {
                s.split([',', 'x']).map(|v| v.trim().parse::<usize>().map_err(|_| anyhow!("{what}: {v:?} is not a size"))).collect()
            };
            let mut shapes: Vec<(String, [usize; 3], bool, bool)> =
                parse(&sizes, "--sizes")?.into_iter().map(|n| (format!("{n}³"), [n, n, n], false, false)).collect();
            if let [t, d, v] = parse(&head, "--head")?[..] {
                shapes.push(("head forward  [t,d]·[d,v]".into(), [t, d, v], false, false));
                shapes.push(("head dW       [d,t]·[t,v] (transposed lhs)".into(), [d, t, v], true, false));
                shapes.push(("head dX       [t,v]·[v,d] (transposed rhs)".into(), [t, v, d], false, true));
            } else {
                return Err(anyhow!("--head: give tokens x d_model x vocab, e.g. 2048x256x32000"));
            }
            let mut results = Vec::new();
            for (name, [m, k, n], transpose_lhs, transpose_rhs) in shapes {
                use burn::tensor::{Distribution, Tensor};
                let lhs = if transpose_lhs {
                    Tensor::<2>::random([k, m], Distribution::Default, &device).transpose()
                } else {
                    Tensor::<2>::random([m, k], Distribution::Default, &device)
                };
                let rhs = if transpose_rhs {
                    Tensor::<2>::random([n, k], Distribution::Default, &device).transpose()
                } else {
                    Tensor::<2>::random([k, n], Distribution::Default, &device)
                };
                let mut best = f64::INFINITY;
                for i in 0..repeats + 1 {
                    let start = Instant::now();
                    let out = lhs.clone().matmul(rhs.clone());
                    let _ = out.slice([0..1, 0..1]).into_scalar::<f32>();
                    if i > 0 {
                        best = best.min(start.elapsed().as_secs_f64());
                    }
                }
                let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
                eprintln!("{name:<44} {gflops:>7.1} GFLOP/s");
                results.push(json!({"shape": name, "m": m, "k": k, "n": n, "seconds": best, "gflop_per_s": gflops}));
            }
            write_json(&json!({"matmul": results, "backend": backend,
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)}), json)
        }
        BenchCommand::Data { dataset, tokenizer, batch, segment_len, seconds, json } => {
            let corpus = open_dataset(&dataset.dataset, dataset.format.as_deref(), dataset.config_filter)?;
            let tok = Tokenizer::load(&tokenizer)?;
            let dir = tempfile::tempdir()?;
            let out = dir.path().join("prepared");
            let start = Instant::now();
            let manifest = prepare(&corpus, &tok, &out, &PrepareOptions::default())?;
            let prepare_s = start.elapsed().as_secs_f64();
            let prepared_tokens: u64 = manifest.splits.values().map(|s| s.tokens).sum();

            let split = Arc::new(PreparedData::open(&out)?.split(Split::Train)?);
            let mut stream = SegmentStream::shuffled(split, batch, segment_len, 0)?;
            let (start, mut tokens, mut segments) = (Instant::now(), 0u64, 0u64);
            while start.elapsed().as_secs_f64() < seconds {
                tokens += stream.next_segment().num_targets() as u64;
                segments += 1;
            }
            let loader_s = start.elapsed().as_secs_f64();
            let result = json!({
                "prepare": {"tokens": prepared_tokens, "seconds": prepare_s, "tokens_per_s": prepared_tokens as f64 / prepare_s},
                "loader": {"batch": batch, "segment_len": segment_len, "segments": segments, "tokens": tokens,
                           "seconds": loader_s, "tokens_per_s": tokens as f64 / loader_s},
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            });
            write_json(&result, json)
        }
    }
}
