//! Output through a [`Terminal`]: line-end translation and the first write error kept.

use core::fmt;

use super::Terminal;

/// Output through a [`Terminal`]: `\n` → `\r\n` when it asks for that, and the first write
/// error kept (later writes are skipped) so that formatting code need not check each one.
pub(super) struct Out<'t, T: Terminal> {
    pub(super) term: &'t mut T,
    crlf: bool,
    error: Option<T::Error>,
}

impl<'t, T: Terminal> Out<'t, T> {
    pub(super) fn new(term: &'t mut T) -> Self {
        let crlf = term.crlf();
        Out {
            term,
            crlf,
            error: None,
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let result = if self.crlf {
            let mut result = Ok(());
            for (i, piece) in bytes.split(|&b| b == b'\n').enumerate() {
                if i > 0 {
                    result = self.term.write(b"\r\n");
                }
                if result.is_ok() && !piece.is_empty() {
                    result = self.term.write(piece);
                }
                if result.is_err() {
                    break;
                }
            }
            result
        } else {
            self.term.write(bytes)
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    pub(super) fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.term.flush() {
                self.error = Some(e);
            }
        }
    }

    pub(super) fn finish(mut self) -> Result<(), T::Error> {
        self.flush();
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<T: Terminal> fmt::Write for Out<'_, T> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}
