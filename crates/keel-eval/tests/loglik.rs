//! Log-likelihood scoring against a direct computation from the full forward's logits.
use keel_infer::progress::Progress;

use keel_eval::loglik::loglikelihoods;
use keel_kernels::cross_entropy::IGNORE;
use keel_model::{Batch, Transformer, Workspace};
use std::path::PathBuf;

fn model() -> Transformer {
    Transformer::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keel-model/tests/fixtures/parity/llama_tied"))
        .unwrap()
}

/// log p(cont | ctx) from one full forward of ctx + cont.
fn direct(m: &Transformer, ctx: &[u32], cont: &[u32]) -> f64 {
    let ids: Vec<u32> = ctx.iter().chain(cont).copied().collect();
    let t = ids.len();
    let batch = Batch {
        batch: 1,
        seq: t,
        ids: ids.clone(),
        positions: (0..t as u32).collect(),
        segments: vec![1; t],
        targets: vec![IGNORE; t],
    };
    let mut ws = Workspace::new(&m.config, 1, t, false).unwrap();
    m.forward(&mut ws, &batch).unwrap();
    let v = m.config.vocab_size;
    (ctx.len() - 1..t - 1)
        .map(|p| {
            let row = &ws.logits[p * v..(p + 1) * v];
            let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            row[ids[p + 1] as usize] as f64 - lse
        })
        .sum()
}

#[test]
fn shared_context_single_tokens_and_multi_token_continuations_match_the_direct_computation() {
    let m = model();
    let ctx_a = vec![5, 9, 17, 3, 40];
    let ctx_b = vec![7, 7, 30];
    let pairs = vec![
        (ctx_a.clone(), vec![11]),
        (ctx_a.clone(), vec![12]),
        (ctx_a.clone(), vec![13, 14]),
        (ctx_b.clone(), vec![11]),
        (ctx_b.clone(), vec![50, 60, 70]),
        (ctx_a.clone(), vec![12]),
    ];
    for rows in [1, 2, 8] {
        let got = loglikelihoods(&m, &pairs, rows, &mut Progress::quiet()).unwrap();
        for ((ctx, cont), g) in pairs.iter().zip(&got) {
            let want = direct(&m, ctx, cont);
            assert!((g.ll - want).abs() < 1e-4, "rows {rows}: {ctx:?} + {cont:?}: {} vs {want}", g.ll);
        }
        assert_eq!(got[1].ll, got[5].ll);
    }
}

#[test]
fn an_item_longer_than_the_context_length_is_refused() {
    let mut m = model();
    m.config.max_position_embeddings = 6;
    let pairs = vec![(vec![5, 9, 17, 3, 40], vec![11, 12, 13])];
    let err = format!("{:#}", loglikelihoods(&m, &pairs, 1, &mut Progress::quiet()).unwrap_err());
    assert!(err.contains("7 tokens") && err.contains("context length of 6"), "{err}");
}

#[test]
fn code_length_is_the_mean_loss_of_the_supervised_tokens() {
    use keel_data::mask::TokenizedExample;
    let m = model();
    let ex = vec![
        TokenizedExample { ids: vec![5, 9, 17, 3, 40], supervised: vec![false, false, true, true, true] },
        TokenizedExample { ids: vec![7, 30, 8], supervised: vec![false, true, true] },
    ];
    let tl = keel_eval::codelength::token_losses(&m, &ex, 2).unwrap();
    assert_eq!(tl.losses.len(), 5);
    let want = (-direct(&m, &[5, 9], &[17, 3, 40]) - direct(&m, &[7], &[30, 8])) / 5.0;
    assert!((tl.mean() - want).abs() < 1e-5, "{} vs {want}", tl.mean());
}
