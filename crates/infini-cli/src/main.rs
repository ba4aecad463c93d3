//! `infini`: train and evaluate Infini-Transformer language models.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alloc;
mod bench;
mod check;
mod data;
mod eval;
mod infer;
mod interop;
mod model_info;
mod train;

/// Train and evaluate Infini-Transformer language models (Infini-attention, arXiv 2404.07143).
#[derive(Parser)]
#[command(name = "infini", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's parameter count and the size of its compressive memory.
    ModelInfo {
        /// A TOML config with a [model] table (e.g. configs/tiny.toml).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also estimate the peak memory of a training step (weights, gradients, optimizer state,
        /// activations per backprop window with and without train.checkpointing, the memory
        /// state, the head's logits), from the config's [data] and [train] tables.
        #[arg(long)]
        estimate_memory: bool,
        /// Streams per step for the estimate (default: the config's data.batch_size).
        #[arg(long, requires = "estimate_memory")]
        batch_size: Option<usize>,
    },
    /// Train a tokenizer.
    #[command(subcommand)]
    Tokenizer(data::TokenizerCommand),
    /// Prepare corpora into token shards and inspect them.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a model from a config (truncated backprop through the memory).
    Train(train::TrainArgs),
    /// Perplexity of a checkpoint over whole documents, streamed with the memory.
    Eval(eval::EvalArgs),
    /// Generate text from a prompt (read segment by segment into memory, then decoded with a cache).
    Generate(infer::GenerateArgs),
    /// Passkey retrieval: accuracy at finding a 5-digit key hidden in long filler text.
    Passkey(infer::PasskeyArgs),
    /// Show each head's gate sigmoid(beta) and its memory's size after a document.
    Inspect(infer::InspectArgs),
    /// Draw a run's training curves (loss, LR, gradient norm, gates) into RUN_DIR/curves.svg.
    Plot {
        /// The run folder (holding metrics.jsonl).
        run_dir: PathBuf,
    },
    /// Import a Llama-family model in the Hugging Face layout as an infini checkpoint (adds Infini-attention).
    Import(interop::ImportArgs),
    /// Export a checkpoint to the Hugging Face layout (safetensors).
    Export(interop::ExportArgs),
    /// Check that a compute backend computes what Flex does (logits of every memory kind,
    /// causality, gradients through the memory, fused attention, training steps).
    Check(check::CheckArgs),
    /// Measure throughput (JSON output).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static ALLOC: alloc::LargeBlockCache = alloc::LargeBlockCache;
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

impl Command {
    /// Whether the verb computes with tensors (and so reuses large blocks of memory).
    fn computes(&self) -> bool {
        !matches!(self, Command::ModelInfo { .. } | Command::Tokenizer(_) | Command::Data(_) | Command::Plot { .. } | Command::Import(_) | Command::Export(_))
    }
}

fn main() -> ExitCode {
    // Past a file-size limit (`ulimit -f`), let writes fail with an error we report and recover
    // from, instead of the signal that would kill the process mid-write.
    #[cfg(unix)]
    // SAFETY: setting signal dispositions before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        // Output piped into a reader that stops early (`infini check | head`) ends the process
        // quietly, as for other command-line tools, instead of a failed print.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A bug must still end in one line, not a backtrace (RUST_BACKTRACE=1 shows the full trace).
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            eprintln!("error: internal error: {}{at} (a bug in infini; rerun with RUST_BACKTRACE=1 and report it)", message.replace('\n', " "));
        }));
    }
    let cli = Cli::parse();
    if cli.command.computes() && cfg!(not(feature = "mimalloc")) {
        alloc::tune_for_tensors();
    }
    let result = infini_train::backend::in_worker_pool(|| run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ModelInfo { config, json, estimate_memory, batch_size } => model_info::run(&config, json, estimate_memory.then_some(batch_size)),
        Command::Tokenizer(c) => data::tokenizer(c),
        Command::Data(c) => data::data(c),
        Command::Bench(c) => bench::run(c),
        Command::Check(args) => check::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => infer::generate_cmd(args),
        Command::Passkey(args) => infer::passkey_cmd(args),
        Command::Inspect(args) => infer::inspect_cmd(args),
        Command::Import(args) => interop::import(args),
        Command::Export(args) => interop::export(args),
        Command::Plot { run_dir } => infini_train::plot::plot_run(&run_dir)
            .map(|p| println!("wrote {}", p.display()))
            .map_err(|e| anyhow::anyhow!(e)),
    }
}
