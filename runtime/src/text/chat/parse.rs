//! One input line → one [`Request`]: commands, their integer arguments, prompt escapes.
//!
//! Numbers are read with integers only: `"0.8"` is 800 thousandths, never a float.

use core::fmt;

/// Highest `/temp`, in thousandths (100.0, the bound `tools generate` accepts).
pub const MAX_TEMPERATURE_MILLI: u32 = 100_000;
/// Highest `/tokens`.
pub const MAX_TOKENS: u32 = 1_000_000;

/// What an input line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// An empty line: nothing to do.
    Empty,
    /// Text to continue, escapes still in it (see [`unescape`]).
    Prompt(&'a [u8]),
    /// `/temp T`: temperature in thousandths (0 = greedy).
    Temperature(u32),
    /// `/topk K` (0 = all tokens).
    TopK(u32),
    /// `/seed S`.
    Seed(u64),
    /// `/tokens N`.
    Tokens(u32),
    /// `/cores N`: cores sharing each token's work (`None`: report them).
    Cores(Option<u32>),
    /// `/stats`.
    Stats,
    /// `/help`.
    Help,
}

/// Why a line was refused. Each prints as one line (without the `error: ` prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError<'a> {
    /// A `/` command this protocol does not know (the word as typed).
    UnknownCommand(&'a [u8]),
    /// A command's argument is missing or not a number in its range.
    BadArgument {
        /// The command, e.g. `/temp`.
        command: &'static str,
        /// What it takes, e.g. `a decimal from 0 to 100 with at most 3 decimals`.
        expected: &'static str,
    },
    /// A `\` in a prompt followed by something other than `n`, `\` or `/`.
    BadEscape,
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LineError::UnknownCommand(word) => {
                f.write_str("unknown command \"")?;
                for &b in word.iter().take(32) {
                    let c = if b.is_ascii_graphic() { b as char } else { '?' };
                    fmt::Write::write_char(f, c)?;
                }
                f.write_str("\" (try /help)")
            }
            LineError::BadArgument { command, expected } => {
                write!(f, "{command} expects {expected}")
            }
            LineError::BadEscape => f.write_str(
                "a backslash in a prompt must start \\n (newline), \\\\ (backslash) or \\/ (slash)",
            ),
        }
    }
}

/// Parses one line (without its line end).
///
/// A line that starts with `/` is a command; any other non-empty line is a prompt, kept byte
/// for byte (leading and trailing spaces included, so `" "` is a prompt too).
pub fn parse_line(line: &[u8]) -> Result<Request<'_>, LineError<'_>> {
    if line.is_empty() {
        return Ok(Request::Empty);
    }
    let Some(command) = line.strip_prefix(b"/") else {
        return Ok(Request::Prompt(line));
    };
    let (word, arg) = split_word(command);
    let arg = trim(arg);
    match word {
        b"temp" => parse_milli(arg)
            .filter(|&t| t <= MAX_TEMPERATURE_MILLI)
            .map(Request::Temperature)
            .ok_or(LineError::BadArgument {
                command: "/temp",
                expected:
                    "a decimal from 0 to 100 with at most 3 decimals, e.g. /temp 0.8 (0 = greedy)",
            }),
        b"topk" => parse_u64(arg)
            .and_then(|k| u32::try_from(k).ok())
            .map(Request::TopK)
            .ok_or(LineError::BadArgument {
                command: "/topk",
                expected: "a whole number, e.g. /topk 40 (0 = all tokens)",
            }),
        b"seed" => parse_u64(arg)
            .map(Request::Seed)
            .ok_or(LineError::BadArgument {
                command: "/seed",
                expected: "a whole number from 0 to 18446744073709551615",
            }),
        b"tokens" => parse_u64(arg)
            .filter(|&n| n <= u64::from(MAX_TOKENS))
            .map(|n| Request::Tokens(n as u32))
            .ok_or(LineError::BadArgument {
                command: "/tokens",
                expected: "a whole number from 0 to 1000000",
            }),
        b"cores" if arg.is_empty() => Ok(Request::Cores(None)),
        b"cores" => parse_u64(arg)
            .filter(|n| (1..=2).contains(n))
            .map(|n| Request::Cores(Some(n as u32)))
            .ok_or(LineError::BadArgument {
                command: "/cores",
                expected: "1 or 2 (the cores that share each token's work)",
            }),
        b"stats" | b"help" if !arg.is_empty() => Err(LineError::BadArgument {
            command: if word == b"stats" { "/stats" } else { "/help" },
            expected: "no argument",
        }),
        b"stats" => Ok(Request::Stats),
        b"help" | b"?" => Ok(Request::Help),
        _ => Err(LineError::UnknownCommand(
            line.get(..word.len() + 1).unwrap_or(line),
        )),
    }
}

/// Splits at the first space: (word, rest).
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i..).unwrap_or(&[])),
        None => (s, &[]),
    }
}

/// Without leading and trailing spaces.
fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or(&[])
}

/// A decimal integer (digits only, at least one), `None` on overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A non-negative decimal with at most 3 decimals, in thousandths: `"0.8"` → 800,
/// `"1"` → 1000, `".25"` → 250, `"2."` → 2000. `None` for anything else or on overflow.
pub fn parse_milli(s: &[u8]) -> Option<u32> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (s.get(..i)?, s.get(i + 1..)?),
        None => (s, &[][..]),
    };
    if (int.is_empty() && frac.is_empty()) || frac.len() > 3 {
        return None;
    }
    let whole = if int.is_empty() { 0 } else { parse_u64(int)? };
    let mut milli = 0u64;
    for i in 0..3 {
        let digit = match frac.get(i) {
            Some(&b) => u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?),
            None => 0,
        };
        milli = milli * 10 + digit;
    }
    u32::try_from(whole.checked_mul(1000)?.checked_add(milli)?).ok()
}

/// Resolves a prompt's escapes in place (`\n` → newline, `\\` → `\`, `\/` → `/`) and
/// returns the new length. The text only shrinks, so it fits where it was.
pub fn unescape(text: &mut [u8]) -> Result<usize, LineError<'static>> {
    let mut read = 0;
    let mut write = 0;
    while let Some(&b) = text.get(read) {
        let out = if b == b'\\' {
            read += 1;
            match text.get(read) {
                Some(b'n') => b'\n',
                Some(b'\\') => b'\\',
                Some(b'/') => b'/',
                _ => return Err(LineError::BadEscape),
            }
        } else {
            b
        };
        if let Some(slot) = text.get_mut(write) {
            *slot = out;
        }
        read += 1;
        write += 1;
    }
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_reads_decimals_exactly() {
        assert_eq!(parse_milli(b"0.8"), Some(800));
        assert_eq!(parse_milli(b"0"), Some(0));
        assert_eq!(parse_milli(b"1"), Some(1000));
        assert_eq!(parse_milli(b"1.25"), Some(1250));
        assert_eq!(parse_milli(b".5"), Some(500));
        assert_eq!(parse_milli(b"2."), Some(2000));
        assert_eq!(parse_milli(b"0.001"), Some(1));
        assert_eq!(parse_milli(b"100"), Some(100_000));
        assert_eq!(parse_milli(b"4294967.295"), Some(u32::MAX));
        for bad in [
            &b""[..],
            b".",
            b"0.0001",
            b"-1",
            b"1e3",
            b"0,8",
            b"1.2.3",
            b" 1",
            b"4294967.296",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_milli(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn u64_rejects_signs_spaces_and_overflow() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+1",
            b"-1",
            b"1 ",
            b"0x10",
        ] {
            assert_eq!(parse_u64(bad), None);
        }
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse_line(b"/temp 0.8"), Ok(Request::Temperature(800)));
        assert_eq!(parse_line(b"/temp   1.5  "), Ok(Request::Temperature(1500)));
        assert_eq!(parse_line(b"/topk 40"), Ok(Request::TopK(40)));
        assert_eq!(parse_line(b"/seed 3"), Ok(Request::Seed(3)));
        assert_eq!(parse_line(b"/tokens 200"), Ok(Request::Tokens(200)));
        assert_eq!(parse_line(b"/stats"), Ok(Request::Stats));
        assert_eq!(parse_line(b"/cores 2"), Ok(Request::Cores(Some(2))));
        assert_eq!(parse_line(b"/cores  1 "), Ok(Request::Cores(Some(1))));
        assert_eq!(parse_line(b"/cores"), Ok(Request::Cores(None)));
        assert_eq!(parse_line(b"/help"), Ok(Request::Help));
        assert_eq!(parse_line(b""), Ok(Request::Empty));
        assert_eq!(parse_line(b"   "), Ok(Request::Prompt(b"   ")));
        assert_eq!(parse_line(b" ROMEO: "), Ok(Request::Prompt(b" ROMEO: ")));
    }

    #[test]
    fn bad_commands_name_the_problem() {
        assert_eq!(
            parse_line(b"/frobnicate 3"),
            Err(LineError::UnknownCommand(b"/frobnicate"))
        );
        for bad in [
            &b"/temp"[..],
            b"/temp x",
            b"/temp 100.001",
            b"/temp -1",
            b"/topk 4294967296",
            b"/seed",
            b"/tokens 1000001",
            b"/stats now",
            b"/cores 0",
            b"/cores 3",
            b"/cores two",
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(matches!(e, LineError::BadArgument { .. }), "{e:?}");
        }
        let text = std::format!("{}", parse_line(b"/temp 0.8.1").unwrap_err());
        assert!(text.starts_with("/temp expects a decimal"), "{text}");
        let text = std::format!("{}", parse_line(b"/\xffoo").unwrap_err());
        assert_eq!(text, "unknown command \"/?oo\" (try /help)");
    }

    #[test]
    fn escapes_resolve_in_place() {
        let mut text = *b"JULIET:\\n\\\\x\\/";
        let n = unescape(&mut text).unwrap();
        assert_eq!(&text[..n], b"JULIET:\n\\x/");
        for bad in [&b"a\\"[..], b"\\t", b"\\\\\\"] {
            let mut t = [0u8; 8];
            t[..bad.len()].copy_from_slice(bad);
            assert_eq!(unescape(&mut t[..bad.len()]), Err(LineError::BadEscape));
        }
    }
}
