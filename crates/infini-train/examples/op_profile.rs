//! Times forward + backward of the model's parts on one segment (Flex, configs/bench.toml sizes).
use std::time::Instant;
use burn::tensor::{Device, Distribution, Tensor};
use infini_model::{LayerMemory, Memory, ModelConfig, MemoryUpdate};
use infini_model::rope::Rope;

fn time(name: &str, f: impl Fn() -> f32) {
    let _ = f();
    let start = Instant::now();
    let n = 5;
    for _ in 0..n { let _ = f(); }
    eprintln!("{name:<44} {:>8.2} ms", start.elapsed().as_secs_f64() * 1000.0 / n as f64);
}

fn main() {
    let device = Device::flex().autodiff();
    let config = ModelConfig { vocab_size: 256, d_model: 256, n_layers: 4, n_heads: 4, head_dim: Some(64), ffn_hidden: 1024, segment_len: 256, memory: MemoryUpdate::Linear, ..ModelConfig::tiny(256) };
    let model = config.init(&device);
    let block = &model.blocks[0];
    let rope = Rope::new(256, 64, 10000.0, &device);
    let x = || Tensor::<3>::random([1, 256, 256], Distribution::Default, &device).require_grad();
    let sink = |t: Tensor<3>| { let g = t.sum().backward(); drop(g); 0.0 };
    time("ffn fwd", || { let _ = block.ffn.forward(x()); 0.0 });
    time("ffn fwd+bwd", || sink(block.ffn.forward(x())));
    time("rmsnorm fwd+bwd", || sink(block.ffn_norm.forward(x())));
    let mem = || Some(LayerMemory::Compressive(Memory::empty(1, 4, 64, 64, &device)));
    time("attention (memory) fwd", || { let _ = block.attn.forward(x(), &rope, mem()); 0.0 });
    time("attention (memory) fwd+bwd", || { let (o, m) = block.attn.forward(x(), &rope, mem()); let LayerMemory::Compressive(m) = m.unwrap() else { panic!() }; sink(o + m.m.sum().reshape([1,1,1])); 0.0 });
    time("block (memory) fwd+bwd", || sink(block.forward(x(), &rope, mem()).0));
    let q = || Tensor::<4>::random([1, 4, 256, 64], Distribution::Default, &device).require_grad();
    time("sdpa causal fwd+bwd", || { let o = burn::tensor::module::attention(q(), q(), q(), None, None, burn::tensor::ops::AttentionModuleOptions { scale: None, softcap: None, is_causal: true }); let g = o.sum().backward(); drop(g); 0.0 });
    time("rope fwd+bwd", || { let o = rope.apply(q(), 0); let g = o.sum().backward(); drop(g); 0.0 });
    time("sigma fwd+bwd", || { let o = infini_model::sigma(q()); let g = o.sum().backward(); drop(g); 0.0 });
    let w = Tensor::<2>::random([256, 1024], Distribution::Default, &device).require_grad();
    time("matmul [256,256]x[256,1024] fwd+bwd", || { let o = x().reshape([256, 256]).matmul(w.clone()); let g = o.sum().backward(); drop(g); 0.0 });

    let big = ModelConfig { vocab_size: 32000, tie_embeddings: false, ..config.clone() }.init(&device);
    let tokens = || Tensor::<2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new((0..256i64).map(|i| i * 97 % 32000).collect::<Vec<_>>(), [1, 256]), &device);
    time("embedding 32000 fwd+bwd", || sink(big.embed(tokens())));
    let gw = Tensor::<2>::random([256, 32000], Distribution::Default, &device);
    time("W-term (W*gW).sum() fwd+bwd", || { let g = (big.head_weight() * gw.clone()).sum().backward(); drop(g); 0.0 });
    time("logits autodiff fwd+bwd", || sink(big.logits(x())));
}
