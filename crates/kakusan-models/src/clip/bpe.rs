//! Byte-pair encoding of one pre-tokenised word: the vocabulary, the merge ranks and the
//! merge loop, with a cache of words already encoded.
//!
//! A word (already mapped to byte-level characters) starts as one symbol per character, the
//! last one carrying the end-of-word marker `</w>`. Then, again and again, the adjacent pair
//! with the lowest merge rank is merged wherever it occurs (left to right, without overlap)
//! until no adjacent pair has a rank. This is the loop of OpenAI's CLIP `bpe()` and of
//! transformers' `CLIPTokenizer.bpe`, and gives the same result as the heap-ordered merge
//! of the `tokenizers` crate (equal ranks only ever belong to the same pair, whose
//! occurrences both merge leftmost first).

use std::collections::HashMap;
use std::sync::Mutex;

/// The end-of-word marker CLIP appends to the last symbol of each word.
pub(crate) const END_OF_WORD: &str = "</w>";

/// Cached words beyond this count are dropped (the cache is cleared) so a long-running
/// process cannot grow without bound.
const CACHE_CAPACITY: usize = 20_000;

/// What one merge produces: its rank (lower merges first) and the id of the merged symbol.
#[derive(Debug, Clone, Copy)]
struct Merge {
    rank: u32,
    merged: u32,
}

/// A BPE vocabulary with its merge table.
#[derive(Debug)]
pub(crate) struct Bpe {
    vocab: HashMap<String, u32>,
    merges: HashMap<(u32, u32), Merge>,
    unk_id: Option<u32>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

/// A merge line that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnusableMerge {
    pub(crate) index: usize,
    pub(crate) reason: String,
}

impl Bpe {
    /// Builds the model from a vocabulary and merges in rank order. Merges whose parts or
    /// result are not in the vocabulary cannot apply; they are skipped and returned so the
    /// caller can report them.
    pub(crate) fn new(
        vocab: HashMap<String, u32>,
        merges: &[(String, String)],
        unk_token: Option<&str>,
    ) -> (Self, Vec<UnusableMerge>) {
        let mut table = HashMap::with_capacity(merges.len());
        let mut unusable = Vec::new();
        for (index, (left, right)) in merges.iter().enumerate() {
            let joined = format!("{left}{right}");
            let ids = (vocab.get(left), vocab.get(right), vocab.get(&joined));
            match ids {
                (Some(&l), Some(&r), Some(&m)) => {
                    let rank = u32::try_from(index).unwrap_or(u32::MAX);
                    // A repeated merge takes its last rank, as both references do
                    // (a dict / map built from the list); the CLIP files repeat none.
                    table.insert((l, r), Merge { rank, merged: m });
                }
                _ => unusable.push(UnusableMerge {
                    index,
                    reason: format!("{left:?} + {right:?} -> {joined:?} is not in the vocabulary"),
                }),
            }
        }
        let unk_id = unk_token.and_then(|t| vocab.get(t).copied());
        let bpe = Self {
            vocab,
            merges: table,
            unk_id,
            cache: Mutex::new(HashMap::new()),
        };
        (bpe, unusable)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub(crate) fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// All (token, id) pairs of the vocabulary.
    pub(crate) fn vocab(&self) -> &HashMap<String, u32> {
        &self.vocab
    }

    /// Number of merges in use.
    #[cfg(test)]
    pub(crate) fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// The ids of one word (byte-level characters, no marker yet), using the cache.
    pub(crate) fn encode_word(&self, word: &str) -> Vec<u32> {
        if let Ok(cache) = self.cache.lock() {
            if let Some(ids) = cache.get(word) {
                return ids.clone();
            }
        }
        let ids = self.merge_word(word);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(word.to_owned(), ids.clone());
        }
        ids
    }

    /// The initial symbols of a word: one per character, the last with `</w>`; characters
    /// missing from the vocabulary become the unknown token (or are dropped if there is
    /// none, as the `tokenizers` crate does).
    fn initial_symbols(&self, word: &str) -> Vec<u32> {
        let mut symbols = Vec::with_capacity(word.len());
        let mut chars = word.chars().peekable();
        let mut buf = String::new();
        while let Some(c) = chars.next() {
            buf.clear();
            buf.push(c);
            if chars.peek().is_none() {
                buf.push_str(END_OF_WORD);
            }
            match self.vocab.get(buf.as_str()).copied().or(self.unk_id) {
                Some(id) => symbols.push(id),
                None => tracing::debug!(symbol = %buf, "BPE symbol not in vocabulary, dropped"),
            }
        }
        symbols
    }

    /// The merge loop, without the cache.
    fn merge_word(&self, word: &str) -> Vec<u32> {
        let mut symbols = self.initial_symbols(word);
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|pair| self.merges.get(&(pair[0], pair[1])).map(|m| (pair, m)))
                .min_by_key(|(_, m)| m.rank)
                .map(|(pair, m)| (pair[0], pair[1], m.merged));
            let Some((left, right, merged)) = best else {
                break;
            };
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
            if symbols.len() == 1 {
                break;
            }
        }
        symbols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Bpe {
        let tokens = [
            "a", "b", "c", "a</w>", "b</w>", "c</w>", "ab", "abc</w>", "aa", "aa</w>", "bc</w>",
        ];
        let vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = [
            ("a", "b"),
            ("ab", "c</w>"),
            ("a", "a"),
            ("a", "a</w>"),
            ("b", "c</w>"),
            ("x", "y"), // unusable: not in the vocabulary
        ]
        .map(|(l, r)| (l.to_string(), r.to_string()));
        let (bpe, unusable) = Bpe::new(vocab, &merges, Some("c</w>"));
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].index, 5);
        bpe
    }

    fn tokens(bpe: &Bpe, ids: &[u32]) -> Vec<String> {
        let by_id: HashMap<u32, &String> = bpe.vocab().iter().map(|(t, &i)| (i, t)).collect();
        ids.iter().map(|i| by_id[i].clone()).collect()
    }

    #[test]
    fn single_character_word_gets_end_marker() {
        let bpe = toy();
        assert_eq!(tokens(&bpe, &bpe.encode_word("a")), ["a</w>"]);
    }

    #[test]
    fn merges_follow_rank_not_position() {
        let bpe = toy();
        // "abc": (a,b) rank 0 beats (b,c</w>) rank 4, then (ab,c</w>) rank 1.
        assert_eq!(tokens(&bpe, &bpe.encode_word("abc")), ["abc</w>"]);
        assert_eq!(bpe.merge_count(), 5);
    }

    #[test]
    fn repeated_pair_merges_left_to_right_without_overlap() {
        let bpe = toy();
        // a a a a</w>: (a,a) rank 2 merges positions 0-1; positions 2,3 are (a, a</w>),
        // rank 3, merged afterwards.
        assert_eq!(tokens(&bpe, &bpe.encode_word("aaaa")), ["aa", "aa</w>"]);
        // a a a</w>: (a,a) merges first at 0-1, leaving (aa, a</w>) which has no merge.
        assert_eq!(tokens(&bpe, &bpe.encode_word("aaa")), ["aa", "a</w>"]);
    }

    #[test]
    fn unknown_characters_become_unk_and_cache_is_consistent() {
        let bpe = toy();
        let first = bpe.encode_word("zb");
        assert_eq!(tokens(&bpe, &first), ["c</w>", "b</w>"]);
        assert_eq!(bpe.encode_word("zb"), first);
    }
}
