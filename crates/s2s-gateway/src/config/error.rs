//! Configuration errors: each located by line and column where the text allows it, all of a
//! file reported at once, and rendered for a terminal with the line and a caret.

use std::{fmt, ops::Range};

/// A line and column in the configuration text, both from 1 (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` of `source` (clamped to its length).
    pub(crate) fn of(source: &str, offset: usize) -> Location {
        let offset = offset.min(source.len());
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: source[..offset].matches('\n').count() + 1,
            column: source[line_start..offset].chars().count() + 1,
        }
    }
}

/// One problem of a configuration, located where the text allows it.
#[derive(Clone, Debug)]
pub struct ConfigError {
    message: String,
    span: Option<Range<usize>>,
    location: Option<Location>,
    source_line: Option<String>,
}

impl ConfigError {
    pub(crate) fn new(
        message: impl Into<String>,
        span: Option<Range<usize>>,
        source: &str,
    ) -> Self {
        let (location, source_line) = match &span {
            Some(span) => {
                let start = span.start.min(source.len());
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[start..]
                    .find('\n')
                    .map_or(source.len(), |i| start + i);
                let text = source[line_start..line_end].trim_end_matches('\r');
                (Some(Location::of(source, start)), Some(text.to_owned()))
            }
            None => (None, None),
        };
        ConfigError {
            message: message.into(),
            span,
            location,
            source_line,
        }
    }

    /// What is wrong and, where it helps, what would be right.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where, as a line and column.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// Where, as a byte range of the text.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(Location { line, column }) => write!(f, "{line}:{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a configuration (at least one).
#[derive(Clone, Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One problem found before (or instead of) the checks, such as a file that cannot be read.
    pub(crate) fn one(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }

    /// The problems, in the order of the text.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Renders the errors for a terminal, each as `NAME:LINE:COLUMN: error: MESSAGE` followed
    /// by the line of the file and a caret under the place.
    pub fn render(&self, name: &str) -> String {
        let mut out = String::new();
        for e in &self.errors {
            match (e.location, &e.source_line) {
                (Some(Location { line, column }), Some(text)) => {
                    let gutter = line.to_string().len();
                    let width = e.span.as_ref().map_or(1, |s| {
                        let len = s.end.saturating_sub(s.start);
                        len.clamp(1, text.chars().count().saturating_sub(column - 1).max(1))
                    });
                    out.push_str(&format!(
                        "{name}:{line}:{column}: error: {}\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}\n",
                        e.message,
                        "",
                        "",
                        " ".repeat(column - 1),
                        "^".repeat(width),
                    ));
                }
                _ => out.push_str(&format!("{name}: error: {}\n", e.message)),
            }
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects the errors of the checks against one source text; each section's check reports
/// into it and goes on, so that one run finds every problem.
pub(crate) struct Errors<'a> {
    source: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        Errors {
            source,
            errors: Vec::new(),
        }
    }

    /// A problem at `span` of the text.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(message, Some(span), self.source));
    }

    /// A problem of the file as a whole (something missing).
    pub(crate) fn global(&mut self, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(message, None, self.source));
    }

    /// A problem at `span` when there is one, else of the file as a whole.
    pub(crate) fn at_or_global(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(message, span, self.source));
    }

    /// The line `offset` of the text is on.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        Location::of(self.source, offset).line
    }

    /// `value` when nothing was reported, else every problem in the order of the text (file-wide
    /// ones last).
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        let mut errors = self.errors;
        errors.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
        Err(ConfigErrors { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters_from_one() {
        let text = "a = 1\nné = \"x\"\n";
        assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
        // `=` of the second line: after `n`, the two bytes of `é` and a space.
        assert_eq!(Location::of(text, 10), Location { line: 2, column: 4 });
        assert_eq!(Location::of(text, 999).line, 3);
    }

    #[test]
    fn errors_come_in_the_order_of_the_text_with_file_wide_ones_last() {
        let text = "a = 1\nb = 2\n";
        let mut errors = Errors::new(text);
        errors.global("missing");
        errors.at(6..7, "second");
        errors.at(0..1, "first");
        let list = errors.finish(()).unwrap_err();
        let messages: Vec<String> = list.errors().iter().map(ToString::to_string).collect();
        assert_eq!(messages, ["1:1: first", "2:1: second", "missing"]);
        assert_eq!(list.to_string(), "1:1: first\n2:1: second\nmissing");
        assert!(Errors::new(text).finish(7).is_ok_and(|v| v == 7));
    }

    #[test]
    fn render_of_a_file_wide_error_has_no_caret() {
        let errors = ConfigErrors::one(ConfigError::new("cannot read x", None, ""));
        assert_eq!(errors.render("gw.toml"), "gw.toml: error: cannot read x\n");
    }
}
