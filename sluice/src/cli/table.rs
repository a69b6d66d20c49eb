//! Plain-text layout of the CLI's answers for people: column-aligned tables,
//! key/value listings, and the shorthands both use (sizes, hash prefixes,
//! `k=v` lists). No colour and no terminal detection: the text is the same on
//! a terminal and in a pipe; scripts that need structure ask for `--json`.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;
use sluice_registry_client::ClientError;

/// Between two columns.
const GAP: &str = "  ";

/// Rows of cells, each column padded to its widest cell, headers first.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|header| String::from(*header)).collect(),
            rows: Vec::new(),
        }
    }

    /// A row may be shorter than the headers: the missing cells are empty.
    pub fn push(&mut self, row: Vec<String>) {
        // A line break inside a cell would break the alignment of every row after it.
        self.rows
            .push(row.into_iter().map(|cell| one_line(&cell)).collect());
    }

    /// The table, one line per row, each ending in a newline; no trailing spaces.
    pub fn render(&self) -> String {
        let header_row_opt = if self.headers.is_empty() {
            None
        } else {
            Some(&self.headers)
        };
        let all_rows: Vec<&Vec<String>> = header_row_opt.into_iter().chain(&self.rows).collect();
        let column_count = all_rows.iter().map(|row| row.len()).max().unwrap_or(0);
        let mut widths = vec![0; column_count];
        for row in &all_rows {
            for (width, cell) in widths.iter_mut().zip(row.iter()) {
                *width = (*width).max(display_width(cell));
            }
        }
        let mut text = String::new();
        for row in &all_rows {
            let mut line = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = row.get(index).map_or("", String::as_str);
                if index > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - display_width(cell)));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `key:  value` lines, the values aligned; a key may be empty to continue
/// the previous one on the next line (a second input of a signature).
pub fn key_values(entries: &[(&str, String)]) -> String {
    let mut listing = Table::default();
    for (key, value) in entries {
        let label = if key.is_empty() {
            String::new()
        } else {
            format!("{key}:")
        };
        listing.push(vec![label, value.clone()]);
    }
    listing.render()
}

/// Bytes in B, KiB, MiB or GiB, one decimal above bytes (`1.2 KiB`).
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    // Precision lost in the casts is far below the one decimal shown.
    if bytes < KIB {
        return format!("{bytes} B");
    }
    if bytes < MIB {
        return format!("{:.1} KiB", bytes as f64 / KIB as f64);
    }
    if bytes < GIB {
        return format!("{:.1} MiB", bytes as f64 / MIB as f64);
    }
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// The first `digits` characters of a hash; the whole text when shorter.
pub fn short_hash(hash: &str, digits: usize) -> &str {
    // `get` rather than slicing: a registry that answers something odd must not panic the CLI.
    hash.get(..digits).unwrap_or(hash)
}

/// At most `max_chars` characters, ending in `…` when cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `k=v k2=v2`, in key order; `-` for none.
pub fn pairs<V: Display>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "-".to_string();
    }
    map.iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text, or `-` when it is empty, so that an empty cell still reads as "none".
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Width in characters: `…` and `→` are one column, though three bytes.
/// (Wide CJK characters are not measured as two; not worth a dependency.)
fn display_width(text: &str) -> usize {
    text.chars().count()
}

fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r', '\t']) {
        return text.to_string();
    }
    text.split(['\n', '\r', '\t'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, ClientError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|err| ClientError::Decode(format!("re-encoding the answer as JSON: {err}")))?;
    text.push('\n');
    Ok(text)
}

pub(super) fn version_or_dash(version_opt: Option<u64>) -> String {
    version_opt.map_or_else(|| "-".to_string(), |version| version.to_string())
}

/// `0.2` as `20%`, `0.125` as `12.5%`: two decimals at most, none when whole.
pub fn percent(fraction: f64) -> String {
    let fixed = format!("{:.2}", fraction * 100.0);
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut table = Table::new(&["NAME", "LATEST", "DESCRIPTION"]);
        table.push(vec!["credit_risk".into(), "3".into(), "default risk".into()]);
        table.push(vec!["digits".into(), "12".into(), "-".into()]);
        assert_eq!(
            table.render(),
            "NAME         LATEST  DESCRIPTION\n\
             credit_risk  3       default risk\n\
             digits       12      -\n"
        );
    }

    #[test]
    fn short_rows_and_multibyte_cells_still_align() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.push(vec!["x…".into()]);
        table.push(vec!["→".into(), "two\nlines".into(), "c".into()]);
        assert_eq!(table.render(), "A   B          C\nx…\n→   two lines  c\n");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "AT"]).render(), "ID  AT\n");
    }

    #[test]
    fn key_values_align_the_values() {
        let listing = key_values(&[
            ("name", "credit_risk".to_string()),
            ("inputs", "features FP32 [-1, 4]".to_string()),
            ("", "mask BOOL [-1]".to_string()),
        ]);
        assert_eq!(
            listing,
            "name:    credit_risk\ninputs:  features FP32 [-1, 4]\n         mask BOOL [-1]\n"
        );
    }

    #[test]
    fn shorthands() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1229), "1.2 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(short_hash("1a2b3c4d5e6f7a8b", 12), "1a2b3c4d5e6f");
        assert_eq!(short_hash("1a2b", 12), "1a2b");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        let metrics = BTreeMap::from([("f1".to_string(), 0.8), ("auc".to_string(), 0.91)]);
        assert_eq!(pairs(&metrics), "auc=0.91 f1=0.8");
        assert_eq!(pairs(&BTreeMap::<String, String>::new()), "-");
    }
}
