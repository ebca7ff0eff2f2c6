//! The byte-to-character table of byte-level BPE (GPT-2, CLIP).
//!
//! BPE runs over characters, but byte-level BPE wants to work on UTF-8 bytes without ever
//! seeing a space or a control character. Each of the 256 byte values therefore stands for
//! one printable character: the bytes that already are printable Latin-1 characters
//! (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves, and the other 68 bytes, in
//! increasing order, take the characters U+0100, U+0101, … in turn.

/// Whether byte `b` is printable in Latin-1 and so stands for itself.
fn stands_for_itself(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The two directions of the byte <-> character table.
#[derive(Debug, Clone)]
pub(crate) struct ByteLevelTable {
    byte_to_char: [char; 256],
}

impl ByteLevelTable {
    pub(crate) fn new() -> Self {
        let mut byte_to_char = ['\0'; 256];
        let mut next_spare = 0x100u32;
        for b in 0..=255u8 {
            byte_to_char[usize::from(b)] = if stands_for_itself(b) {
                char::from(b)
            } else {
                // 0x100 + n stays below 0x200: always a valid scalar value.
                let c = char::from_u32(next_spare).unwrap_or('\u{FFFD}');
                next_spare += 1;
                c
            };
        }
        Self { byte_to_char }
    }

    /// The character standing for byte `b`.
    pub(crate) fn char_of(&self, b: u8) -> char {
        self.byte_to_char[usize::from(b)]
    }

    /// The string of stand-in characters for the UTF-8 bytes of `text`.
    pub(crate) fn encode(&self, text: &str) -> String {
        text.bytes().map(|b| self.char_of(b)).collect()
    }

    /// The byte a stand-in character stands for, if it is one.
    pub(crate) fn byte_of(&self, c: char) -> Option<u8> {
        let code = u32::from(c);
        if code < 0x100 {
            let b = code as u8;
            return stands_for_itself(b).then_some(b);
        }
        // Spare characters are handed out in increasing byte order.
        let rank = code.checked_sub(0x100)? as usize;
        (0..=255u8).filter(|&b| !stands_for_itself(b)).nth(rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_onto_256_printable_chars() {
        let table = ByteLevelTable::new();
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = table.char_of(b);
            assert!(!c.is_whitespace() && !c.is_control(), "byte {b} -> {c:?}");
            assert!(seen.insert(c), "byte {b} maps to a character already used");
            assert_eq!(table.byte_of(c), Some(b));
        }
    }

    #[test]
    fn known_entries() {
        let table = ByteLevelTable::new();
        // Printable ASCII stands for itself.
        assert_eq!(table.char_of(b'a'), 'a');
        assert_eq!(table.char_of(b'!'), '!');
        // Byte 0 is the first spare: U+0100; space (0x20) is the 33rd spare: U+0120 'Ġ'.
        assert_eq!(table.char_of(0), '\u{100}');
        assert_eq!(table.char_of(b' '), 'Ġ');
        // 0xAD (soft hyphen) is the last spare: U+0143.
        assert_eq!(table.char_of(0xAD), '\u{143}');
        assert_eq!(table.encode("é"), "Ã©");
        assert_eq!(table.byte_of('\u{144}'), None);
        assert_eq!(table.byte_of(' '), None);
    }
}
