//! [`ParseError`]: a /proc text that did not have the shape its parser expects.

/// A /proc file whose text did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {found:?}")]
pub struct ParseError {
    /// What was expected.
    pub what: &'static str,
    /// The offending text (a line, or a value).
    pub found: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, found: impl Into<String>) -> ParseError {
        ParseError { what, found: found.into() }
    }
}

impl From<ParseError> for std::io::Error {
    fn from(e: ParseError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}
