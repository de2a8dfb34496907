//! Bytes in, lines out: a fixed-size line editor and the queue of bytes typed ahead while a
//! generation runs.

/// Longest input line in bytes (without its line end).
pub const MAX_LINE: usize = 256;
/// Bytes kept while a generation runs (type-ahead); further input waits in the sender.
pub const TYPEAHEAD: usize = 256;

/// Ctrl-C: cancels the line being typed, or stops a generation.
pub const CTRL_C: u8 = 0x03;
/// Ctrl-D: the end of the input (the QEMU twin exits; a line typed before it still runs).
pub const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7F;

/// What one input byte did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing visible (an ignored control byte, the `\n` of a `\r\n`, input past the limit).
    Nothing,
    /// The byte was added to the line.
    Added,
    /// The last character was erased (backspace).
    Erased,
    /// Ctrl-C: the line was thrown away.
    Cancelled,
    /// A line end: [`LineEditor::line`] holds a complete line.
    Line,
    /// A line end after more than [`MAX_LINE`] bytes: the line was thrown away.
    TooLong,
    /// Ctrl-D: the input ends; [`LineEditor::line`] holds what was typed before it.
    End,
}

/// Collects bytes into a line. `\r`, `\n` and `\r\n` end a line; backspace and DEL erase the
/// last character (all bytes of a UTF-8 sequence); other control bytes except tab are ignored.
pub struct LineEditor {
    buf: [u8; MAX_LINE],
    len: usize,
    overflow: bool,
    after_cr: bool,
    complete: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty editor.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; MAX_LINE],
            len: 0,
            overflow: false,
            after_cr: false,
            complete: false,
        }
    }

    /// Takes one input byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        if byte == b'\n' && after_cr {
            // The `\n` of a `\r\n`: the line ended at the `\r` (and stays readable).
            return Edit::Nothing;
        }
        if self.complete {
            self.complete = false;
            self.len = 0;
        }
        match byte {
            b'\r' | b'\n' => {
                if core::mem::replace(&mut self.overflow, false) {
                    self.len = 0;
                    Edit::TooLong
                } else {
                    self.complete = true;
                    Edit::Line
                }
            }
            CTRL_D => {
                self.complete = true;
                if core::mem::replace(&mut self.overflow, false) {
                    self.len = 0;
                }
                Edit::End
            }
            CTRL_C => {
                self.len = 0;
                self.overflow = false;
                Edit::Cancelled
            }
            BACKSPACE | DELETE => {
                if self.len == 0 || self.overflow {
                    return Edit::Nothing;
                }
                // Drop UTF-8 continuation bytes, then the lead byte.
                while self.len > 0 {
                    self.len -= 1;
                    if self.buf.get(self.len).is_none_or(|b| b & 0xC0 != 0x80) {
                        break;
                    }
                }
                Edit::Erased
            }
            b if b < 0x20 && b != b'\t' => Edit::Nothing,
            b => match self.buf.get_mut(self.len) {
                Some(slot) if !self.overflow => {
                    *slot = b;
                    self.len += 1;
                    Edit::Added
                }
                _ => {
                    self.overflow = true;
                    Edit::Nothing
                }
            },
        }
    }

    /// The line completed by the last [`Edit::Line`] (or the partial line before one), which
    /// the caller may rewrite in place (prompt escapes shrink it).
    pub fn line(&mut self) -> &mut [u8] {
        self.buf.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// A fixed-size FIFO of bytes.
pub struct Typeahead {
    buf: [u8; TYPEAHEAD],
    head: usize,
    len: usize,
}

impl Default for Typeahead {
    fn default() -> Self {
        Self::new()
    }
}

impl Typeahead {
    /// An empty queue.
    pub const fn new() -> Self {
        Typeahead {
            buf: [0; TYPEAHEAD],
            head: 0,
            len: 0,
        }
    }

    /// True when no byte fits.
    pub fn is_full(&self) -> bool {
        self.len == TYPEAHEAD
    }

    /// Appends a byte; false (and the byte is dropped) when full.
    pub fn push(&mut self, byte: u8) -> bool {
        match self.buf.get_mut((self.head + self.len) % TYPEAHEAD) {
            Some(slot) if self.len < TYPEAHEAD => {
                *slot = byte;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// The oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf.get(self.head).copied();
        self.head = (self.head + 1) % TYPEAHEAD;
        self.len -= 1;
        byte
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(ed: &mut LineEditor, bytes: &[u8]) -> std::vec::Vec<Edit> {
        bytes.iter().map(|&b| ed.feed(b)).collect()
    }

    #[test]
    fn every_line_end_style_ends_one_line() {
        for end in [&b"\r"[..], b"\n", b"\r\n"] {
            let mut ed = LineEditor::new();
            let mut input = b"hi".to_vec();
            input.extend_from_slice(end);
            let edits = feed_all(&mut ed, &input);
            assert_eq!(edits.iter().filter(|e| **e == Edit::Line).count(), 1);
            assert_eq!(ed.line(), b"hi");
            // The next byte starts a new line.
            assert_eq!(ed.feed(b'x'), Edit::Added);
            assert_eq!(ed.line(), b"x");
        }
        // Two \n are two (empty) lines, \r\r as well.
        let mut ed = LineEditor::new();
        assert_eq!(feed_all(&mut ed, b"\n\n"), [Edit::Line, Edit::Line]);
        assert_eq!(feed_all(&mut ed, b"\r\r"), [Edit::Line, Edit::Line]);
    }

    #[test]
    fn backspace_erases_whole_utf8_characters() {
        let mut ed = LineEditor::new();
        feed_all(&mut ed, "aé".as_bytes());
        assert_eq!(ed.feed(0x7F), Edit::Erased);
        assert_eq!(ed.line(), b"a");
        assert_eq!(ed.feed(0x08), Edit::Erased);
        assert_eq!(ed.feed(0x08), Edit::Nothing);
        assert_eq!(ed.line(), b"");
    }

    #[test]
    fn control_bytes_are_ignored_and_ctrl_c_cancels() {
        let mut ed = LineEditor::new();
        assert_eq!(
            feed_all(&mut ed, b"a\x1b\x00\tb"),
            [
                Edit::Added,
                Edit::Nothing,
                Edit::Nothing,
                Edit::Added,
                Edit::Added
            ]
        );
        assert_eq!(ed.line(), b"a\tb");
        assert_eq!(ed.feed(CTRL_C), Edit::Cancelled);
        assert_eq!(ed.line(), b"");
        feed_all(&mut ed, b"last");
        assert_eq!(ed.feed(CTRL_D), Edit::End);
        assert_eq!(ed.line(), b"last");
    }

    #[test]
    fn an_overlong_line_is_refused_whole_and_the_next_one_works() {
        let mut ed = LineEditor::new();
        for _ in 0..MAX_LINE {
            assert_eq!(ed.feed(b'a'), Edit::Added);
        }
        assert_eq!(ed.feed(b'b'), Edit::Nothing);
        assert_eq!(ed.feed(0x08), Edit::Nothing);
        assert_eq!(ed.feed(b'\n'), Edit::TooLong);
        feed_all(&mut ed, b"ok\n");
        assert_eq!(ed.line(), b"ok");
        // Exactly MAX_LINE bytes is fine.
        let mut ed = LineEditor::new();
        feed_all(&mut ed, &[b'z'; MAX_LINE]);
        assert_eq!(ed.feed(b'\r'), Edit::Line);
        assert_eq!(ed.line().len(), MAX_LINE);
    }

    #[test]
    fn typeahead_is_a_bounded_fifo() {
        let mut q = Typeahead::new();
        assert_eq!(q.pop(), None);
        for i in 0..TYPEAHEAD {
            assert!(q.push(i as u8));
        }
        assert!(q.is_full());
        assert!(!q.push(0));
        assert_eq!(q.pop(), Some(0));
        assert!(q.push(7));
        for i in 1..TYPEAHEAD {
            assert_eq!(q.pop(), Some(i as u8));
        }
        assert_eq!(q.pop(), Some(7));
        assert_eq!(q.pop(), None);
        q.push(1);
        q.clear();
        assert_eq!(q.pop(), None);
    }
}
