//! Text of a growing token sequence, for streaming and stop strings.
//!
//! A byte-level BPE token can hold part of a UTF-8 character (an emoji, most CJK characters), so
//! the text of the tokens so far may end in an incomplete character, which a decoder renders as
//! U+FFFD. [`TextStream`] emits text only once it is complete: it decodes a short window of the
//! latest tokens twice (with and without the new ones) and emits the difference unless it ends
//! in U+FFFD. Text once emitted never changes, so a reader can slice it by byte offsets, and each
//! step decodes a few tokens instead of the whole answer.

use anyhow::Result;
use keel_data::tokenizer::Tokenizer;

/// The stable text of a token sequence, grown one token at a time.
#[derive(Clone, Debug, Default)]
pub struct TextStream {
    /// Start of the decoding window: tokens before it are settled.
    prefix: usize,
    /// End of the text emitted so far, in tokens.
    read: usize,
    /// The emitted text: complete characters only, append-only.
    pub text: String,
}

impl TextStream {
    /// Takes `ids` (the whole sequence, one token longer than at the last call, or more) and
    /// returns the text it adds, empty while a character is still incomplete.
    pub fn push(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<&str> {
        let settled = tokenizer.decode(&ids[self.prefix..self.read], true)?;
        let now = tokenizer.decode(&ids[self.prefix..], true)?;
        let start = self.text.len();
        // A window decodes with the same leading-space handling both times, so the new text is
        // what follows the settled part.
        if now.len() > settled.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(settled.len()) {
            self.text.push_str(&now[settled.len()..]);
            self.prefix = self.read;
            self.read = ids.len();
        }
        Ok(&self.text[start..])
    }
}
