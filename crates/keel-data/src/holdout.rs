//! A held-out split of a user's training data, for scoring the domain on answers the model was
//! not trained on. An example is held out by a hash of its own messages, not by its position or a
//! random draw: `keel train` (`data.holdout`) and `keel eval --suite domain:FILE --holdout` reach
//! the same split from the file alone, and the split stays the same when examples are added,
//! removed or reordered.

use crate::dataset::Example;
use anyhow::{ensure, Result};

/// Checks a held-out fraction: at least 0 (nothing held out) and below 1.
pub fn check_fraction(fraction: f64, key: &str) -> Result<()> {
    ensure!(
        fraction.is_finite() && (0.0..1.0).contains(&fraction),
        "{key} = {fraction} is not a fraction in [0, 1): the share of examples held out, e.g. 0.1"
    );
    Ok(())
}

/// Whether `example` belongs to the held-out part of a split that holds out `fraction`.
pub fn is_held_out(example: &Example, fraction: f64) -> bool {
    // FNV-1a over each message's role and text (with separators, so that moving text between
    // fields changes the hash), then SplitMix64's finalizer to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in &example.messages {
        for b in m.role.bytes().chain([0xff]).chain(m.content.bytes()).chain([0xfe]) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// `examples` split into (kept for training, held out).
pub fn split(examples: Vec<Example>, fraction: f64) -> (Vec<Example>, Vec<Example>) {
    examples.into_iter().partition(|e| !is_held_out(e, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;

    fn example(i: usize) -> Example {
        Example {
            messages: vec![Message::new("user", &format!("question {i}")), Message::new("assistant", &format!("{i}"))],
            source: format!("f.jsonl:{}", i + 1),
        }
    }

    #[test]
    fn the_split_holds_out_about_the_fraction_by_content_alone() {
        let all: Vec<Example> = (0..4000).map(example).collect();
        let (kept, held) = split(all.clone(), 0.1);
        assert_eq!(kept.len() + held.len(), 4000);
        assert!((350..450).contains(&held.len()), "{} held out of 4000 at 0.1", held.len());
        // Reordered, and with the source lines changed, the same examples are held out.
        let mut shuffled: Vec<Example> = all.iter().rev().cloned().collect();
        for (i, e) in shuffled.iter_mut().enumerate() {
            e.source = format!("other.jsonl:{i}");
        }
        let (_, held_again) = split(shuffled, 0.1);
        let key = |e: &Example| e.messages[1].content.clone();
        let mut a: Vec<String> = held.iter().map(key).collect();
        let mut b: Vec<String> = held_again.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        // A larger fraction holds out a superset.
        let (_, more) = split(all.clone(), 0.3);
        assert!(held.iter().all(|h| more.contains(h)));
        assert!(split(all, 0.0).1.is_empty());
    }

    #[test]
    fn fractions_outside_zero_to_one_are_refused_naming_the_key() {
        for bad in [-0.1, 1.0, 2.0, f64::NAN] {
            let e = check_fraction(bad, "data.holdout").unwrap_err().to_string();
            assert!(e.contains("data.holdout"), "{e}");
        }
        assert!(check_fraction(0.0, "x").is_ok() && check_fraction(0.25, "x").is_ok());
    }
}
