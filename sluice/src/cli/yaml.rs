//! `-o yaml`: the registry's JSON answer written as block-style YAML, as
//! `kubectl -o yaml` prints. A small emitter over `serde_json::Value`
//! rather than a dependency: JSON's data model is all it needs, and a
//! string that could read as anything else (a number, `true`, `null`, a
//! key with `: `) is written double-quoted, which YAML reads exactly as
//! JSON does.

use serde_json::Value;

pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_child(out, value, indent);
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // A map in a list starts on the dash's line, its keys aligned.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_list(out, inner, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn write_child(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        // Lists sit at their key's indent, as kubectl writes them.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// A scalar, or an empty map or list, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string(text),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Plain when it can only read as this string, else double-quoted.
fn string(text: &str) -> String {
    if is_plain(text) {
        text.to_string()
    } else {
        // JSON's escapes are YAML's in a double-quoted scalar.
        Value::String(text.to_string()).to_string()
    }
}

fn is_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    const RESERVED: [&str; 12] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ".nan", ".inf",
    ];
    first.is_ascii_alphabetic()
        && !text.ends_with(' ')
        && !RESERVED.contains(&text.to_ascii_lowercase().as_str())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | '='))
        && !text.contains(" #")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_style_that_reads_back_as_the_same_data() {
        let value = json!({
            "model": "credit_risk",
            "revision": 7,
            "note": "ship it: now",
            "flag": "true",
            "empty": "",
            "targets": [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}],
            "tags": {},
            "none": null,
            "nested": [[1, 2], []],
        });
        let text = to_yaml(&value);
        assert_eq!(
            text,
            "empty: \"\"\nflag: \"true\"\nmodel: credit_risk\nnested:\n-\n  - 1\n  - 2\n- []\nnone: null\n\
             note: \"ship it: now\"\nrevision: 7\ntags: {}\ntargets:\n- version: 3\n  weight: 90\n\
             - version: 4\n  weight: 10\n"
        );
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(
            to_yaml(&json!("2026-12-07T01:00:00Z")),
            "\"2026-12-07T01:00:00Z\"\n"
        );
    }
}
