//! How results are printed: aligned text tables, JSON, times and short values.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::io::Write;

/// A listing cut at `--limit`: the rows shown and, when more exist, how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows shown.
    pub rows: Vec<T>,
    /// How many rows match in all (equal to the rows shown unless `truncated`).
    pub total: u64,
    /// More rows match than are shown.
    pub truncated: bool,
}

impl<T> Page<T> {
    /// `rows` read with a limit of `limit + 1` (0 = no limit): the extra row, if any, only says that more exist,
    /// and then `count` tells how many.
    pub async fn cut<F, E>(mut rows: Vec<T>, limit: usize, count: F) -> Result<Self, E>
    where
        F: std::future::Future<Output = Result<u64, E>>,
    {
        if limit == 0 || rows.len() <= limit {
            return Ok(Self { total: rows.len() as u64, rows, truncated: false });
        }
        rows.truncate(limit);
        Ok(Self { rows, total: count.await?, truncated: true })
    }

    /// What to tell the user on standard error when rows were left out.
    pub fn note(&self) -> Option<String> {
        self.truncated.then(|| format!("showing {} of {}; --limit 0 for all", self.rows.len(), self.total))
    }
}

impl<T: Serialize> Page<T> {
    /// Writes the page as one JSON document: `{"<key>": [...], "total": N, "truncated": bool}`.
    pub fn write_json(&self, out: &mut dyn Write, key: &str) -> Result<(), crate::CliError> {
        let mut document = serde_json::Map::new();
        document.insert(key.to_owned(), serde_json::to_value(&self.rows)?);
        document.insert("total".to_owned(), self.total.into());
        document.insert("truncated".to_owned(), self.truncated.into());
        write_json(out, &document)
    }
}

/// A text table with a header row; columns are padded to their widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            right: vec![false; headers.len()],
        }
    }

    /// Right-aligns column `index` (for numbers).
    pub fn align_right(mut self, index: usize) -> Self {
        if let Some(slot) = self.right.get_mut(index) {
            *slot = true;
        }
        self
    }

    /// Adds a row (missing cells are empty, extra cells are ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table, one line per row, two spaces between columns, no trailing blanks.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        self.write_line(out, &self.headers, &widths)?;
        for row in &self.rows {
            self.write_line(out, row, &widths)?;
        }
        Ok(())
    }

    fn write_line(&self, out: &mut dyn Write, cells: &[String], widths: &[usize]) -> std::io::Result<()> {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if self.right.get(i).copied().unwrap_or(false) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<(), crate::CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| {
        // A closed pipe (`| head`) is an output error, not an encoding bug.
        if e.is_io() {
            crate::CliError::Output(std::io::Error::from(e))
        } else {
            crate::CliError::Json(e)
        }
    })?;
    writeln!(out)?;
    Ok(())
}

/// A time as RFC 3339 with milliseconds, UTC.
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An optional time, `-` when absent.
pub fn opt_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), time)
}

/// An optional value, `-` when absent.
pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A duration in seconds with readable units: `12.5 ms`, `3.20 s`, `4 min 12 s`, `3 h 05 min`, `220 d 8 h`.
pub fn seconds(secs: f64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    if !secs.is_finite() {
        return format!("{secs} s");
    }
    if secs < 1.0 {
        return format!("{:.1} ms", secs * 1000.0);
    }
    if secs < 60.0 {
        return format!("{secs:.2} s");
    }
    let whole = secs.round() as u64;
    match whole {
        w if w < HOUR => format!("{} min {:02} s", w / MINUTE, w % MINUTE),
        w if w < DAY => format!("{} h {:02} min", w / HOUR, w % HOUR / MINUTE),
        w => format!("{} d {} h", w / DAY, w % DAY / HOUR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_and_align() {
        let mut table = Table::new(&["status", "count"]).align_right(1);
        table.row(vec!["completed".into(), "12".into()]);
        table.row(vec!["dropped".into(), "3".into()]);
        let mut out = Vec::new();
        assert!(table.write(&mut out).is_ok());
        assert_eq!(String::from_utf8_lossy(&out), "status     count\ncompleted     12\ndropped        3\n");
    }

    #[test]
    fn durations_are_printed_in_readable_units_however_large() {
        assert_eq!(seconds(0.0125), "12.5 ms");
        assert_eq!(seconds(3.2), "3.20 s");
        assert_eq!(seconds(59.994), "59.99 s");
        assert_eq!(seconds(252.0), "4 min 12 s");
        assert_eq!(seconds(3.0 * 3600.0 + 5.0 * 60.0 + 20.0), "3 h 05 min");
        assert_eq!(seconds(19_037_024.08), "220 d 8 h");
    }

    #[test]
    fn shortens_long_text() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
