//! LoRA against transformers + PEFT (fixtures from tools/make_lora_fixtures.py).

use keel_model::lora::LoraAdapter;
use keel_model::safetensors::SafeTensors;
use keel_model::{Batch, Transformer, Workspace};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

fn batch() -> (Batch, Vec<i64>) {
    let st = SafeTensors::open(&fixture().join("batch.safetensors")).unwrap();
    let shape = st.get("input_ids").unwrap().shape.clone();
    let get = |n: &str| st.read_i64(n).unwrap();
    let mask = get("attention_mask");
    (Batch::from_hf(shape[0], shape[1], &get("input_ids"), &mask, &get("position_ids"), &get("labels")).unwrap(), mask)
}

fn with_adapter() -> Transformer {
    let mut model = Transformer::load(&fixture().join("base")).unwrap();
    model.lora = Some(LoraAdapter::load(&fixture().join("adapter"), &model.config).unwrap());
    model
}

/// Logits at unpadded positions.
fn valid_logits(model: &Transformer, batch: &Batch, mask: &[i64]) -> Vec<f32> {
    let mut ws = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
    model.forward(&mut ws, batch).unwrap();
    let v = model.config.vocab_size;
    mask.iter().enumerate().filter(|(_, &m)| m == 1).flat_map(|(i, _)| ws.logits[i * v..(i + 1) * v].to_vec()).collect()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let diff = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / b.iter().fold(0.0f32, |m, y| m.max(y.abs())).max(1e-30)
}

#[test]
fn adapter_logits_loss_and_gradients_match_peft() {
    let model = with_adapter();
    let reference = SafeTensors::open(&fixture().join("reference.safetensors")).unwrap();
    let (batch, mask) = batch();
    let v = model.config.vocab_size;
    let want = reference.to_vec_f32("logits").unwrap();
    let want: Vec<f32> =
        mask.iter().enumerate().filter(|(_, &m)| m == 1).flat_map(|(i, _)| want[i * v..(i + 1) * v].to_vec()).collect();
    let err = rel_err(&valid_logits(&model, &batch, &mask), &want);
    assert!(err < 1e-4, "logits differ by {err:e}");

    let mut ws = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
    let weights = batch.mean_coefficients();
    let loss: f64 =
        model.forward(&mut ws, &batch).unwrap().iter().zip(&weights).map(|(&l, &w)| l as f64 * w as f64).sum();
    assert!((loss - reference.to_vec_f32("loss").unwrap()[0] as f64).abs() < 1e-5);
    // The gradient buffer holds only the adapter: the frozen base has no gradients at all.
    let adapter = model.lora.as_ref().unwrap();
    let mut grads = vec![0.0; model.num_trainable()];
    assert_eq!(grads.len(), adapter.params.len());
    model.backward(&mut ws, &batch, &weights, &mut grads).unwrap();
    assert_eq!(adapter.tensors.len(), 28);
    for t in &adapter.tensors {
        let g = &grads[t.range.clone()];
        assert!(g.iter().any(|&x| x != 0.0), "{} received no gradient", t.name);
        let err = rel_err(g, &reference.to_vec_f32(&format!("grad.{}", t.name)).unwrap());
        assert!(err < 1e-3, "gradient of {} differs by {err:e}", t.name);
    }
}

#[test]
fn merged_weights_equal_the_adapter_forward_and_peft_merge() {
    let mut model = with_adapter();
    let (batch, mask) = batch();
    let adapter_logits = valid_logits(&model, &batch, &mask);
    model.merge_lora();
    assert!(model.lora.is_none());
    let merged = valid_logits(&model, &batch, &mask);
    assert!(rel_err(&merged, &adapter_logits) < 1e-5);
    let peft = SafeTensors::open(&fixture().join("merged_logits.safetensors")).unwrap();
    let name = peft.names().next().unwrap().to_string();
    let want = peft.to_vec_f32(&name).unwrap();
    let v = model.config.vocab_size;
    let want: Vec<f32> =
        mask.iter().enumerate().filter(|(_, &m)| m == 1).flat_map(|(i, _)| want[i * v..(i + 1) * v].to_vec()).collect();
    assert!(rel_err(&merged, &want) < 1e-4);
}

#[test]
fn adapters_round_trip_in_the_peft_layout() {
    let model = with_adapter();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lora-saved");
    model.lora.as_ref().unwrap().save(&out).unwrap();
    let again = LoraAdapter::load(&out, &model.config).unwrap();
    assert!(again.params == model.lora.as_ref().unwrap().params);
    assert_eq!(again.config, model.lora.as_ref().unwrap().config);
    // A fresh adapter starts as the base model: B = 0.
    let fresh = LoraAdapter::new(&model.config, again.config.clone(), 1).unwrap();
    assert!(fresh
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("lora_B.weight"))
        .all(|t| fresh.params[t.range.clone()].iter().all(|&x| x == 0.0)));
    assert!(fresh
        .tensors
        .iter()
        .filter(|t| t.name.ends_with("lora_A.weight"))
        .all(|t| fresh.params[t.range.clone()].iter().any(|&x| x != 0.0)));
}

#[test]
fn dropout_is_reproducible_and_changes_the_output() {
    let mut model = with_adapter();
    let (batch, mask) = batch();
    let plain = valid_logits(&model, &batch, &mask);
    model.lora.as_mut().unwrap().config.dropout = 0.5;
    let a = valid_logits(&model, &batch, &mask);
    assert!(a != plain && a == valid_logits(&model, &batch, &mask));
    model.lora.as_mut().unwrap().dropout_key = 7;
    assert!(valid_logits(&model, &batch, &mask) != a, "a new key draws new masks");
}

#[test]
fn dropout_backward_matches_finite_differences() {
    let mut model = with_adapter();
    model.lora.as_mut().unwrap().config.dropout = 0.3;
    model.lora.as_mut().unwrap().dropout_key = 11;
    assert_adapter_gradients_match_finite_differences(model);
}

#[test]
fn adapters_on_some_projections_match_finite_differences() {
    // Without k_proj and gate_proj no projections share a stacked product: the per-projection
    // path (the full PEFT adapter above takes the stacked one).
    use keel_model::lora::{LoraConfig, Module};
    let mut model = Transformer::load(&fixture().join("base")).unwrap();
    let targets = vec![Module::Q, Module::V, Module::Up, Module::Down];
    let mut adapter =
        LoraAdapter::new(&model.config, LoraConfig { rank: 3, alpha: 6.0, dropout: 0.0, targets }, 5).unwrap();
    let mut rng = keel_model::rng::Rng::new(9);
    adapter.params.iter_mut().for_each(|p| *p = (rng.normal() * 0.2) as f32);
    model.lora = Some(adapter);
    assert_adapter_gradients_match_finite_differences(model);
}

fn assert_adapter_gradients_match_finite_differences(mut model: Transformer) {
    let (batch, _) = batch();
    let weights = batch.mean_coefficients();
    let mut ws = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
    let loss = |m: &Transformer, ws: &mut Workspace| -> f64 {
        m.forward(ws, &batch).unwrap().iter().zip(&weights).map(|(&l, &w)| l as f64 * w as f64).sum()
    };
    loss(&model, &mut ws);
    let mut grads = vec![0.0; model.num_trainable()];
    model.backward(&mut ws, &batch, &weights, &mut grads).unwrap();
    let n = grads.len();
    for i in [3, n / 7, n / 3, n / 2 + 5, n - 2] {
        let h = 1e-2f32;
        let orig = model.lora.as_ref().unwrap().params[i];
        model.lora.as_mut().unwrap().params[i] = orig + h;
        let up = loss(&model, &mut ws);
        model.lora.as_mut().unwrap().params[i] = orig - h;
        let down = loss(&model, &mut ws);
        model.lora.as_mut().unwrap().params[i] = orig;
        let fd = (up - down) / (2.0 * h as f64);
        assert!(
            (fd - grads[i] as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
            "parameter {i}: finite differences {fd}, backward {}",
            grads[i]
        );
    }
}
