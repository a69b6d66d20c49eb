//! Policy files in one format everywhere (governance, rollouts, triggers,
//! suites, warm-up, actions): TOML, or JSON when the file's name ends in
//! `.json` or its text opens with `{`. Every reader goes through here, so a
//! file that works for one works for all, and a mistake reads the same.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Which format a file is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// JSON for a `.json` name or a text that opens with `{`; else TOML.
    pub fn of(path: &Path, text: &str) -> Format {
        let json_name = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
        if json_name || text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Toml
        }
    }
}

/// `text`, the contents of `path`, as a `T`; the error names the file and
/// what its format's parser said.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    let parsed = match Format::of(path, text) {
        Format::Json => serde_json::from_str(text).map_err(|err| format!("{err} (read as JSON)")),
        Format::Toml => {
            toml::from_str(text).map_err(|err| format!("{} (read as TOML)", err.to_string().trim_end()))
        }
    };
    parsed.map_err(|err| format!("{}: {err}", path.display()))
}

/// Reads and parses `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text =
        std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Policy {
        interval_ms: u64,
        steps: Vec<u32>,
    }

    #[test]
    fn toml_and_json_read_the_same() {
        let expected = Policy {
            interval_ms: 5000,
            steps: vec![10, 50],
        };
        let toml = "interval_ms = 5000\nsteps = [10, 50]\n";
        let json = r#"{"interval_ms": 5000, "steps": [10, 50]}"#;
        assert_eq!(parse::<Policy>(Path::new("r.toml"), toml).unwrap(), expected);
        assert_eq!(parse::<Policy>(Path::new("r.json"), json).unwrap(), expected);
        // Whatever the name, JSON text reads as JSON.
        assert_eq!(parse::<Policy>(Path::new("/dev/stdin"), json).unwrap(), expected);
        let typo = parse::<Policy>(Path::new("r.toml"), "interval = 5000\n").unwrap_err();
        assert!(
            typo.starts_with("r.toml: ") && typo.contains("unknown field `interval`"),
            "{typo}"
        );
        assert!(typo.contains("read as TOML"), "{typo}");
        let missing = read::<Policy>(Path::new("/nonexistent/r.toml")).unwrap_err();
        assert!(
            missing.starts_with("cannot read /nonexistent/r.toml"),
            "{missing}"
        );
    }
}
