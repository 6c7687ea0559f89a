//! From text to token ids: stripping as Python's `str.strip()` does, then the WordPiece
//! tokenizer of `tokenizer.json` with sentence-transformers' limits (truncation at
//! [`MAX_TOKENS`] tokens counting `[CLS]` and `[SEP]`, no padding).
//!
//! The tokenizer works on the whole text before truncating, and keeps everything past the limit
//! as "overflowing" pieces, so a text of megabytes would cost time and memory in proportion to
//! its length for 256 tokens. A long text is therefore tokenised by prefixes: a prefix that ends
//! where BERT's pre-tokenizer splits words anyway (before ASCII whitespace or punctuation) yields
//! exactly the first tokens of the whole text, so once a prefix yields [`MAX_TOKENS`] tokens, those
//! are the whole text's. Prefixes start at 2 KiB and grow fourfold until one is long enough or
//! the whole text is taken.

use std::path::Path;

use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::Tokenizer;

use crate::{EmbedError, LoadError, MAX_TOKENS};

/// Whether Python's `str.isspace()` holds for `c`: Unicode's White_Space property (what
/// [`char::is_whitespace`] tests) plus the four information separators U+001C..U+001F, which
/// Python counts as whitespace because of their bidirectional class.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `text` without leading and trailing whitespace, as Python's `str.strip()` returns it.
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Length of the first prefix tried for a long text: 8 bytes per token, more than English or
/// the entity descriptions pg_evolve embeds take.
const FIRST_PREFIX_BYTES: usize = 8 * MAX_TOKENS;

/// Where BERT's pre-tokenizer separates words whatever surrounds the character: ASCII
/// whitespace, and ASCII punctuation, each mark of which is a word of its own. `]` is left out
/// because it ends the special tokens (`[SEP]`, …) that the tokenizer matches in the raw text.
/// Other characters are left out on purpose: control characters vanish in normalisation, so
/// cutting before one could join or split words differently.
fn splits_words(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || (c.is_ascii_punctuation() && c != ']')
}

/// The first byte offset at or after `limit` (and before the end) where `text` can be cut
/// without changing the tokens before the cut, or `None` if the text is not longer than `limit`
/// or has no such place after it.
fn word_boundary_after(text: &str, limit: usize) -> Option<usize> {
    if text.len() <= limit {
        return None;
    }
    let mut start = limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..]
        .char_indices()
        .find(|(_, c)| splits_words(*c))
        .map(|(i, _)| start + i)
}

/// The tokenizer of `tokenizer.json` with truncation and padding set as sentence-transformers
/// sets them for this model.
pub struct TextEncoder {
    tokenizer: Tokenizer,
}

impl TextEncoder {
    pub fn load(path: &Path, vocab_size: usize) -> Result<TextEncoder, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::unreadable(path, e))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| LoadError::corrupt(path, format!("not a tokenizer: {e}")))?;
        // The file asks for truncation at 128 and padding to 128; sentence-transformers replaces
        // both: truncation at max_seq_length (256, special tokens included) and padding to the
        // longest text of a batch. The forward pass never pads (see `model`), so padding is off.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| LoadError::corrupt(path, format!("truncation: {e}")))?;
        tokenizer.with_padding(None);
        let vocab = tokenizer.get_vocab_size(true);
        if vocab == 0 || vocab > vocab_size {
            return Err(LoadError::corrupt(
                path,
                format!("vocabulary of {vocab} tokens does not fit the model's {vocab_size}"),
            ));
        }
        for special in ["[CLS]", "[SEP]", "[UNK]"] {
            if tokenizer.token_to_id(special).is_none() {
                return Err(LoadError::corrupt(path, format!("no {special} token")));
            }
        }
        let encoder = TextEncoder { tokenizer };
        // The post-processor must frame a text as [CLS] … [SEP].
        let probe = encoder
            .encode("")
            .map_err(|e| LoadError::corrupt(path, e.to_string()))?;
        let cls = encoder.tokenizer.token_to_id("[CLS]");
        let sep = encoder.tokenizer.token_to_id("[SEP]");
        if probe.len() != 2 || Some(probe[0]) != cls || Some(probe[1]) != sep {
            return Err(LoadError::corrupt(
                path,
                format!("the empty text encodes as {probe:?}, not [CLS] [SEP]"),
            ));
        }
        Ok(encoder)
    }

    /// The token ids of `text` as the model sees them: stripped, tokenised, framed by `[CLS]`
    /// and `[SEP]`, at most [`MAX_TOKENS`] long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let text = strip(text);
        let mut limit = FIRST_PREFIX_BYTES;
        while let Some(cut) = word_boundary_after(text, limit) {
            let ids = self.encode_whole(&text[..cut])?;
            if ids.len() == MAX_TOKENS {
                return Ok(ids);
            }
            limit = limit.saturating_mul(4);
        }
        self.encode_whole(text)
    }

    /// Tokenises all of `text` (then truncates).
    fn encode_whole(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let ids = encoding.get_ids();
        if ids.len() < 2 || ids.len() > MAX_TOKENS {
            return Err(EmbedError::Tokenize(format!(
                "the tokenizer produced {} tokens",
                ids.len()
            )));
        }
        Ok(ids.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_follows_python() {
        assert_eq!(strip("  a b \t\n"), "a b");
        assert_eq!(strip("   \n\t  "), "");
        assert_eq!(strip(""), "");
        // U+001C..U+001F, U+0085, U+00A0, U+2028, U+3000 are whitespace to Python.
        assert_eq!(strip("\u{1c}\u{1d}x\u{1e}\u{1f}"), "x");
        assert_eq!(strip("\u{85}\u{a0}x\u{2028}\u{3000}"), "x");
        // Zero-width space, BOM and U+180E are not.
        assert_eq!(strip("\u{200b}x\u{feff}"), "\u{200b}x\u{feff}");
        assert_eq!(strip("\u{180e}x"), "\u{180e}x");
        // Inner whitespace stays.
        assert_eq!(strip(" a \u{1c} b "), "a \u{1c} b");
    }

    #[test]
    fn cuts_fall_before_word_separators() {
        assert_eq!(word_boundary_after("short", 8), None);
        assert_eq!(word_boundary_after("abcdefgh ij", 3), Some(8));
        assert_eq!(word_boundary_after("abcdefgh,ij", 3), Some(8));
        // Not inside a special token, not before a control character.
        assert_eq!(word_boundary_after("ab[SEP]c\u{1}d e", 3), Some(10));
        // A limit inside a multi-byte character moves to the next character.
        assert_eq!(word_boundary_after("éééé é", 1), Some(8));
        assert_eq!(word_boundary_after("abcdefgh", 3), None);
    }

    #[test]
    fn python_space_set() {
        // Every code point Python 3.11's str.isspace() accepts.
        let python: Vec<u32> = vec![
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let ours: Vec<u32> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|c| is_python_space(*c))
            .map(u32::from)
            .collect();
        assert_eq!(ours, python);
    }
}
