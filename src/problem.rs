//! Vakt's input files, and one shape for every problem found in them (schema,
//! policies, data, test suites): the file, where in it, and a plain-English message.

use std::fmt;

/// One input file, by display name (its path) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    /// `line:column` for text positions, a record path such as `employees[3] ("kari")`
    /// for data records, or empty for a whole-file problem.
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: impl Into<String>, at: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            at: at.into(),
            message: message.into(),
        }
    }

    /// A problem at a byte offset of `text`, reported as `line:column` (1-based).
    pub fn at_offset(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, offset);
        Self::new(file, format!("{line}:{col}"), message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at.as_bytes().first() {
            None => write!(f, "{}: {}", self.file, self.message),
            Some(b) if b.is_ascii_digit() => {
                write!(f, "{}:{}: {}", self.file, self.at, self.message)
            }
            Some(_) => write!(f, "{}: {}: {}", self.file, self.at, self.message),
        }
    }
}

/// Every problem found; loading fails if there is any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Problems from a miette diagnostic (Cedar's parse and validation errors): one per
/// labelled span, or one for the whole file when the diagnostic has no span.
pub fn from_diagnostic(file: &str, text: &str, d: &dyn miette::Diagnostic) -> Vec<Problem> {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message = format!("{message} ({help})");
    }
    let labels: Vec<_> = d.labels().map(|l| l.collect()).unwrap_or_default();
    match labels.first() {
        Some(l) => vec![Problem::at_offset(file, text, l.offset(), message)],
        None => vec![Problem::new(file, "", message)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 999), (3, 2));
        assert_eq!(
            Problem::at_offset("p.cedar", t, 4, "bad").to_string(),
            "p.cedar:2:2: bad"
        );
        assert_eq!(
            Problem::new("d.yaml", "teams[0]", "bad").to_string(),
            "d.yaml: teams[0]: bad"
        );
    }
}
