//! Config errors are one line and name the key.

use std::path::Path;

use infini_data::toml_file::{self, ModelTable};
use infini_model::{MemoryKind, ModelConfig};

type File = ModelTable<ModelConfig>;

const GOOD: &str = "[model]\nvocab_size = 100\nd_model = 64\nn_layers = 2\nn_heads = 4\nffn_hidden = 128\n";

/// The error of loading `text`, from parsing or from validation, as the CLI would print it.
fn error_of(text: &str) -> String {
    let path = Path::new("run.toml");
    match toml_file::parse::<File>(path, text) {
        Err(e) => e,
        Ok(f) => f.model.validate().expect_err("config should be rejected").to_string(),
    }
}

fn assert_one_line_naming(err: &str, key: &str) {
    assert!(!err.contains('\n'), "error spans several lines: {err:?}");
    assert!(err.contains(key), "error does not name `{key}`: {err}");
}

#[test]
fn good_config_parses_with_defaults() {
    let file: File = toml_file::parse(Path::new("run.toml"), GOOD).unwrap();
    let m = file.model;
    m.validate().unwrap();
    assert_eq!((m.segment_len, m.memory, m.head_dim()), (2048, MemoryKind::Linear, 16));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = error_of(&format!("{GOOD}n_layer = 3\n"));
    assert_one_line_naming(&err, "n_layer");
    assert!(err.starts_with("run.toml:7:"), "{err}");
}

#[test]
fn inconsistent_head_dim_is_named() {
    assert_one_line_naming(&error_of(&format!("{GOOD}head_dim = 32\n")), "model.head_dim");
    assert_one_line_naming(&error_of(&GOOD.replace("n_heads = 4", "n_heads = 5")), "model.n_heads");
    assert_one_line_naming(&error_of(&format!("{GOOD}n_kv_heads = 3\n")), "model.n_kv_heads");
    assert_one_line_naming(&error_of(&format!("{GOOD}n_kv_heads = 0\n")), "model.n_kv_heads");
}

#[test]
fn zero_sizes_are_named() {
    for key in ["vocab_size", "d_model", "n_layers", "ffn_hidden"] {
        let text = GOOD.lines().map(|l| if l.starts_with(key) { format!("{key} = 0") } else { l.to_string() });
        let text: Vec<String> = text.collect();
        assert_one_line_naming(&error_of(&text.join("\n")), &format!("model.{key}"));
    }
    assert_one_line_naming(&error_of(&format!("{GOOD}segment_len = 0\n")), "model.segment_len");
}

#[test]
fn wrong_types_and_values_are_named() {
    assert_one_line_naming(&error_of(&GOOD.replace("d_model = 64", "d_model = \"64\"")), "run.toml:3:");
    assert_one_line_naming(&error_of(&format!("{GOOD}memory = \"lstm\"\n")), "lstm");
    assert_one_line_naming(&error_of(&format!("{GOOD}dropout = 1.5\n")), "model.dropout");
    assert_one_line_naming(&error_of(&GOOD.replace("n_layers = 2", "n_layers = -2")), "run.toml:4:");
}

#[test]
fn paper_memory_size_is_1_6m_floats() {
    let mut m: ModelConfig = toml_file::parse::<File>(Path::new("x"), GOOD).unwrap().model;
    (m.n_layers, m.n_heads, m.d_model, m.head_dim) = (12, 8, 1024, Some(128));
    assert_eq!(m.memory_floats(), 1_585_152);
    m.memory = MemoryKind::None;
    assert_eq!(m.memory_floats(), 0);
}

#[test]
fn parameter_count_matches_the_built_model() {
    use burn::module::Module;
    let device = burn::tensor::Device::flex();
    for (memory, tie, kv) in [(MemoryKind::Linear, true, None), (MemoryKind::None, false, Some(2)), (MemoryKind::Delta, false, Some(1))] {
        let mut m: ModelConfig = toml_file::parse::<File>(Path::new("x"), GOOD).unwrap().model;
        (m.memory, m.tie_embeddings, m.n_kv_heads) = (memory, tie, kv);
        assert_eq!(m.init(&device).num_params(), m.num_params(), "{memory:?} tied={tie} kv={kv:?}");
    }
}
