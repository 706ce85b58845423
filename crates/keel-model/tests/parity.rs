//! Parity with Hugging Face transformers on tiny random models (fixtures made by
//! `tools/make_parity_fixtures.py`): logits, loss, every parameter's gradient, and a 10-step
//! AdamW loss curve.

use keel_kernels::adamw::AdamWHyper;
use keel_kernels::clip::clip_global_norm;
use keel_model::optim::AdamW;
use keel_model::safetensors::SafeTensors;
use keel_model::{Batch, Transformer, Workspace};
use std::path::PathBuf;

const VARIANTS: [&str; 6] =
    ["llama_tied", "llama_untied_rope3", "mistral_hd24", "qwen2_bias_tied", "qwen3_qknorm", "gemma3_swa"];

fn fixture(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(variant)
}

/// The fixture batch, and the attention mask to know which logits are meaningful.
fn load_batch(variant: &str) -> (Batch, Vec<i64>) {
    let st = SafeTensors::open(&fixture(variant).join("batch.safetensors")).unwrap();
    let shape = st.get("input_ids").unwrap().shape.clone();
    let get = |n: &str| st.read_i64(n).unwrap();
    let mask = get("attention_mask");
    let batch =
        Batch::from_hf(shape[0], shape[1], &get("input_ids"), &mask, &get("position_ids"), &get("labels")).unwrap();
    (batch, mask)
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    let scale = b.iter().fold(0.0f64, |m, y| m.max(y.abs() as f64));
    diff / scale.max(1e-30)
}

/// Forward + backward of mean cross-entropy; returns (loss, grads).
fn loss_and_grads(model: &Transformer, ws: &mut Workspace, batch: &Batch) -> (f64, Vec<f32>) {
    let weights = batch.mean_coefficients();
    let losses = model.forward(ws, batch).unwrap();
    let loss: f64 = losses.iter().zip(&weights).map(|(&l, &w)| l as f64 * w as f64).sum();
    let mut grads = vec![0.0; model.layout.total];
    model.backward(ws, batch, &weights, &mut grads).unwrap();
    (loss, grads)
}

#[test]
fn logits_loss_and_gradients_match_transformers() {
    for variant in VARIANTS {
        let model = Transformer::load(&fixture(variant)).unwrap();
        let reference = SafeTensors::open(&fixture(variant).join("reference.safetensors")).unwrap();
        let (batch, mask) = load_batch(variant);
        let mut ws = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();

        model.forward(&mut ws, &batch).unwrap();
        let vocab = model.config.vocab_size;
        let want = reference.to_vec_f32("logits").unwrap();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for (pos, &m) in mask.iter().enumerate() {
            if m == 1 {
                ours.extend_from_slice(&ws.logits[pos * vocab..(pos + 1) * vocab]);
                theirs.extend_from_slice(&want[pos * vocab..(pos + 1) * vocab]);
            }
        }
        let logit_err = rel_err(&ours, &theirs);
        assert!(logit_err < 1e-4, "{variant}: logits differ by {logit_err:.2e} (relative)");

        let (loss, grads) = loss_and_grads(&model, &mut ws, &batch);
        let want_loss = reference.to_vec_f32("loss").unwrap()[0] as f64;
        assert!((loss - want_loss).abs() < 1e-5, "{variant}: loss {loss} vs transformers {want_loss}");

        let mut names = 0;
        let mut worst = 0.0f64;
        for t in &model.layout.tensors {
            let g = &grads[t.range.clone()];
            assert!(g.iter().any(|&x| x != 0.0), "{variant}: {} received no gradient", t.name);
            let want = reference.to_vec_f32(&format!("grad.{}", t.name)).unwrap_or_else(|e| panic!("{variant}: {e}"));
            let err = rel_err(g, &want);
            assert!(err < 1e-3, "{variant}: gradient of {} differs by {err:.2e} (relative)", t.name);
            worst = worst.max(err);
            names += 1;
        }
        eprintln!(
            "{variant}: logits {logit_err:.1e}, loss {:.1e}, worst gradient {worst:.1e} (relative)",
            (loss - want_loss).abs()
        );
        let reference_grads = reference.names().filter(|n| n.starts_with("grad.")).count();
        assert_eq!(names, reference_grads, "{variant}: every parameter transformers has is checked");
    }
}

#[test]
fn gradient_checkpointing_gives_identical_gradients() {
    for variant in ["llama_untied_rope3", "qwen3_qknorm"] {
        let model = Transformer::load(&fixture(variant)).unwrap();
        let (batch, _) = load_batch(variant);
        let mut plain = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
        let mut ckpt = Workspace::new(&model.config, batch.batch, batch.seq, true).unwrap();
        let (l1, g1) = loss_and_grads(&model, &mut plain, &batch);
        let (l2, g2) = loss_and_grads(&model, &mut ckpt, &batch);
        assert_eq!(l1, l2);
        assert!(g1 == g2, "{variant}: checkpointing changed the gradients");
    }
}

#[test]
fn ten_adamw_steps_follow_the_pytorch_loss_curve() {
    for variant in VARIANTS {
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(variant).join("adamw.json")).unwrap()).unwrap();
        assert_eq!(run["decay_rule"], "ndim>=2");
        let f = |k: &str| run[k].as_f64().unwrap();
        let hyper = AdamWHyper {
            lr: f("lr"),
            beta1: run["betas"][0].as_f64().unwrap(),
            beta2: run["betas"][1].as_f64().unwrap(),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
        };
        let mut model = Transformer::load(&fixture(variant)).unwrap();
        let (batch, _) = load_batch(variant);
        let mut ws = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
        let mut opt = AdamW::new(model.layout.total, hyper);
        for (step, want) in run["losses"].as_array().unwrap().iter().enumerate() {
            let (loss, mut grads) = loss_and_grads(&model, &mut ws, &batch);
            let want = want.as_f64().unwrap();
            assert!((loss - want).abs() < 1e-4, "{variant} step {step}: loss {loss} vs PyTorch {want}");
            let norm = clip_global_norm(&mut grads, f("max_grad_norm"));
            let want_norm = run["grad_norms"][step].as_f64().unwrap();
            assert!(
                (norm - want_norm).abs() < 1e-3 * want_norm,
                "{variant} step {step}: grad norm {norm} vs {want_norm}"
            );
            opt.update(&model.layout.tensors, &mut model.params, &grads, hyper.lr);
        }
    }
}

#[test]
fn saved_model_reloads_bit_identically() {
    for variant in VARIANTS {
        let model = Transformer::load(&fixture(variant)).unwrap();
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("saved").join(variant);
        model.save(&out).unwrap();
        let again = Transformer::load(&out).unwrap();
        assert_eq!(again.config, model.config, "{variant}");
        assert!(again.params == model.params, "{variant}: weights changed in the round trip");
    }
}

#[test]
fn a_larger_workspace_serves_smaller_batches_identically() {
    let model = Transformer::load(&fixture("qwen3_qknorm")).unwrap();
    let (batch, _) = load_batch("qwen3_qknorm");
    let mut exact = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
    let mut larger = Workspace::new(&model.config, 4, 17, false).unwrap();
    let (l1, g1) = loss_and_grads(&model, &mut exact, &batch);
    // Run a bigger batch first so that the buffers hold stale values.
    let (big, _) = load_batch("qwen3_qknorm");
    let mut wide = big.clone();
    wide.batch = 1;
    wide.seq = big.batch * big.seq;
    wide.positions = (0..wide.seq as u32).collect();
    wide.segments = vec![1; wide.seq];
    loss_and_grads(&model, &mut larger, &wide);
    let (l2, g2) = loss_and_grads(&model, &mut larger, &batch);
    assert_eq!(l1, l2);
    assert!(g1 == g2);
    let too_big = Batch { batch: 5, ..batch.clone() };
    assert!(model.forward(&mut larger, &too_big).is_err());
}

#[test]
fn logits_at_targets_only_give_the_same_losses_and_gradients() {
    for variant in ["llama_tied", "qwen3_qknorm"] {
        let model = Transformer::load(&fixture(variant)).unwrap();
        let (batch, _) = load_batch(variant);
        let mut full = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
        let mut sel = Workspace::new(&model.config, batch.batch, batch.seq, false).unwrap();
        sel.logits_at_targets_only = true;
        let (l1, g1) = loss_and_grads(&model, &mut full, &batch);
        let (l2, g2) = loss_and_grads(&model, &mut sel, &batch);
        assert!((l1 - l2).abs() < 1e-6, "{variant}: {l1} vs {l2}");
        assert!(rel_err(&g2, &g1) < 1e-5, "{variant}: gradients differ");
        // Only target positions have logits, and they equal the full forward's.
        model.forward(&mut full, &batch).unwrap();
        model.forward(&mut sel, &batch).unwrap();
        let v = model.config.vocab_size;
        for pos in 0..batch.targets.len() {
            match sel.logits_row(pos, v) {
                Some(row) => assert!(rel_err(row, full.logits_row(pos, v).unwrap()) < 1e-6),
                None => assert_eq!(batch.targets[pos], keel_kernels::cross_entropy::IGNORE),
            }
        }
    }
}
