//! Text from outside (file paths, a blob's metadata) made safe for a terminal: a control
//! character such as ESC could otherwise set the window title, clear the screen or hide text;
//! and text cut to a byte budget without splitting a character.

use std::path::Path;

pub use crate::inspect::printable;

/// A path for a message: [`printable`] of its lossy UTF-8 form (bytes that are not UTF-8 show
/// as U+FFFD). Every message of the tools names paths through this.
pub fn shown(path: &Path) -> String {
    printable(&path.to_string_lossy())
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_never_splits_a_character() {
        for max in 0..12 {
            let mut s = "aé€😀bc".to_string();
            truncate_utf8(&mut s, max);
            assert!(s.len() <= max && "aé€😀bc".starts_with(&s), "{max}: {s:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let p = Path::new("x\x1b]0;T\x07.uf2");
        assert_eq!(shown(p), "x\\u{1b}]0;T\\u{7}.uf2");
        assert_eq!(printable("a\\b\u{202e}"), "a\\\\b\\u{202e}");
        assert_eq!(shown(Path::new("runs/é.bin")), "runs/é.bin");
    }
}
