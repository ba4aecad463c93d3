//! The tensor-op paths that GPU backends take, run on Flex with `INFINI_HOST_PATHS=0`: whole
//! training steps, optimizer included, for a tied and an untied head, with and without
//! segment-level checkpointing, in f32 and bf16. On Flex the other tests take the host paths, so
//! none of them saw what an H200 run found: the untied head's gradient came back as a graph node,
//! and the optimizer panicked ("Can't convert a non leaf tensor into a tracked tensor").
//! This binary holds one test: the switch is read once per process.

use burn::tensor::Device;
use infini_train::RunConfig;
use infini_train::config::Precision;

fn run(tie_embeddings: bool, checkpointing: bool, precision: Precision) -> RunConfig {
    let mut config = infini_train::check::tiny_run(precision);
    config.model.tie_embeddings = tie_embeddings;
    config.train.checkpointing = checkpointing;
    config
}

#[test]
fn tensor_paths_train_with_every_head_and_window() {
    // SAFETY: the only test of this binary sets it before anything reads the environment.
    unsafe { std::env::set_var("INFINI_HOST_PATHS", "0") };
    assert!(!infini_model::host::fused(&Device::flex()), "INFINI_HOST_PATHS=0 must turn the host paths off");
    for tie in [true, false] {
        for checkpointing in [false, true] {
            for precision in [Precision::F32, Precision::Bf16] {
                let case = format!("tied {tie}, checkpointing {checkpointing}, {precision:?}");
                let bench = infini_train::bench::train_steps(&run(tie, checkpointing, precision), 4, 0, &Device::flex(), |_, _, _| {})
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let (first, last) = (bench.losses[0], bench.losses[bench.losses.len() - 1]);
                assert!(last.is_finite() && last < first, "{case}: the loss did not fall: {:?}", bench.losses);
            }
        }
    }
}
