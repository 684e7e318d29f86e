//! Report text made safe inside markup: one escape for XML (the JUnit file) and HTML
//! (the page), for element content and for attribute values in either kind of quotes.

use std::fmt;

/// Text escaped for XML and HTML content and quoted attribute values, as it is written:
/// `&`, `<`, `>` and both quotes become references; newlines, carriage returns and
/// tabs too, so attribute-value normalisation does not turn them into spaces; the
/// characters XML 1.0 does not allow at all (most C0 controls, U+FFFE, U+FFFF) become
/// U+FFFD.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((i, c, with)) = rest.char_indices().find_map(|(i, c)| replacement(c).map(|r| (i, c, r))) {
            f.write_str(&rest[..i])?;
            f.write_str(with)?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// [`Escaped`], as a string.
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// What `c` is written as, when not as itself.
fn replacement(c: char) -> Option<&'static str> {
    Some(match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        '"' => "&quot;",
        '\'' => "&#39;",
        '\n' => "&#10;",
        '\r' => "&#13;",
        '\t' => "&#9;",
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => "\u{FFFD}",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_invalid_characters() {
        assert_eq!(escape(r#"a < b & "c" > 'd'"#), "a &lt; b &amp; &quot;c&quot; &gt; &#39;d&#39;");
        assert_eq!(escape("x\u{1}y\nz"), "x\u{FFFD}y&#10;z");
        assert_eq!(escape("µs ✓"), "µs ✓");
        assert_eq!(Escaped("<µ>").to_string(), "&lt;µ&gt;");
    }
}
