//! CSV downloads (RFC 4180): every cell quoted when it must be, CRLF line
//! ends, and cells that a spreadsheet would read as a formula (`=`, `+`,
//! `-`, `@`, tab, CR first) prefixed with `'`. Data shown here comes from
//! providers and people, so a cell must never run in Excel.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Rows written one by one into a buffer.
#[derive(Debug, Default)]
pub struct CsvWriter {
    out: String,
}

impl CsvWriter {
    pub fn new() -> Self {
        CsvWriter::default()
    }

    /// Writes one record; `cells` are raw values.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_cell(&mut self.out, cell.as_ref());
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// An attachment response named `filename` (ASCII letters, digits, `-`,
    /// `_`, `.` only; anything else becomes `_`).
    pub fn into_download(self, filename: &str) -> Response {
        let safe: String = filename
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            self.out,
        )
            .into_response()
    }
}

/// A number as a plain cell: negative numbers stay numbers.
pub fn number_cell(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => v.to_string(),
        _ => String::new(),
    }
}

fn is_formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

fn looks_like_number(cell: &str) -> bool {
    !cell.is_empty() && cell.parse::<f64>().is_ok_and(f64::is_finite)
}

fn push_cell(out: &mut String, cell: &str) {
    // A negative number is data, not a formula; anything else starting
    // with a formula character is defused.
    let guarded = cell.chars().next().is_some_and(is_formula_start) && !looks_like_number(cell);
    let needs_quotes = guarded || cell.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if needs_quotes {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: &[&str]) -> String {
        let mut w = CsvWriter::new();
        w.row(cells);
        w.finish()
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(line(&["a", "b c", ""]), "a,b c,\r\n");
        assert_eq!(
            line(&["a,b", "say \"hi\"", "two\nlines"]),
            "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }

    #[test]
    fn formulas_are_defused_but_negative_numbers_stay() {
        assert_eq!(line(&["=1+1"]), "\"'=1+1\"\r\n");
        assert_eq!(line(&["+cmd"]), "\"'+cmd\"\r\n");
        assert_eq!(line(&["@SUM(A1)"]), "\"'@SUM(A1)\"\r\n");
        assert_eq!(line(&["-2+3"]), "\"'-2+3\"\r\n");
        assert_eq!(line(&["\tx"]), "\"'\tx\"\r\n");
        assert_eq!(line(&["-12.5"]), "-12.5\r\n");
        assert_eq!(line(&["a=b"]), "a=b\r\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(number_cell(Some(1.5)), "1.5");
        assert_eq!(number_cell(None), "");
        assert_eq!(number_cell(Some(f64::NAN)), "");
    }
}
