//! Names from outside (scenario and phase names, report fields read back by `compare`
//! and `merge`) made safe to print on a terminal: control characters and other
//! characters that do not print are written as escapes, so a name cannot move the
//! cursor, clear the screen, fake a line of output or hide text. And counts written for
//! people (`12,345`), for every layer that prints one.

use std::borrow::Cow;
use std::fmt::Write;

/// `12,345`: a count with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with every character that does not print escaped: `\n`, `\r`, `\t`, `\\` as
/// such, the others as `\u{..}` (C0 and C1 controls, DEL, the bidirectional and
/// zero-width format characters, separators other than the space). Text with nothing to
/// escape is borrowed as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is written as an escape. A backslash is escaped only where something else
/// is, so plain names print as they are and an escaped name reads back unambiguously.
fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible_format(c) || (c.is_whitespace() && c != ' ')
}

/// Unicode format characters that change how the text around them shows: the
/// bidirectional overrides and isolates, zero-width characters, the BOM, soft hyphen.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_borrowed_unchanged() {
        for name in ["ramp", "phase 2", "ça marche — 100 %", "日本語", r"C:\path"] {
            assert!(matches!(printable(name), Cow::Borrowed(n) if n == name), "{name}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("\x1b[2J\x1b[Hfake PASS"), "\\u{1b}[2J\\u{1b}[Hfake PASS");
        assert_eq!(printable("x\ry\tz\0"), "x\\ry\\tz\\u{0}");
        assert_eq!(printable("del\x7f c1\u{9b}"), "del\\u{7f} c1\\u{9b}");
        // A backslash next to an escape is doubled: the escaped text reads back one way.
        assert_eq!(printable("\\u{1b}\x1b"), "\\\\u{1b}\\u{1b}");
    }

    #[test]
    fn invisible_and_reordering_characters_are_escaped() {
        assert_eq!(printable("admin\u{202e}txt"), "admin\\u{202e}txt");
        assert_eq!(printable("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(printable("line\u{2028}sep"), "line\\u{2028}sep");
        assert_eq!(printable("\u{feff}bom"), "\\u{feff}bom");
    }

    #[test]
    fn the_result_holds_no_character_a_terminal_acts_on() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = printable(&all);
        assert!(shown.chars().all(|c| !c.is_control() && !is_invisible_format(c)));
        assert!(!shown.contains('\n') && !shown.contains('\x1b'));
    }
}
