//! The generated references, committed so that a reader (and a diff in
//! review) sees them without running Sluice:
//!
//! - `docs/configuration.md`, from the clap tree: every flag of `sluice
//!   serve` and `sluice registry` with its variable, its default and its
//!   help, so the page cannot drift from what the binary parses;
//! - `docs/openapi/registry.json` and `docs/openapi/v2.json`, the OpenAPI
//!   documents the registry and the gateway serve at `/openapi.json`.
//!
//! A test fails when a committed file is stale; `SLUICE_BLESS=1 cargo test
//! -p sluice reference` writes them again.

use clap::CommandFactory;

use crate::command::Cli;

/// The subcommands whose flags are configuration, in the page's order.
const CONFIGURED: [(&str, &str); 2] = [
    (
        "serve",
        "The gateway (`sluice serve`), with its embedded registry unless `--registry` or `--model-repository` is given.",
    ),
    ("registry", "The standalone registry (`sluice registry`)."),
];

/// The whole page, Markdown.
pub fn configuration_reference() -> String {
    let cli = Cli::command();
    let mut page = String::from(
        "# Configuration\n\n\
         <!-- Generated from the clap tree by `sluice/src/reference.rs`: do not edit by hand. \
         `SLUICE_BLESS=1 cargo test -p sluice reference` writes it again. -->\n\n\
         Every flag has an environment variable; a flag given wins over its variable. \
         `sluice serve --help` and `sluice registry --help` print the same.\n",
    );
    page.push_str("\n## Every command\n\n");
    table(&mut page, cli.get_arguments().filter(|arg| arg.is_global_set()));
    for (name, what) in CONFIGURED {
        let Some(command) = cli.find_subcommand(name) else {
            continue;
        };
        page.push_str(&format!("\n## `sluice {name}`\n\n{what}\n\n"));
        table(
            &mut page,
            command.get_arguments().filter(|arg| !arg.is_global_set()),
        );
    }
    page
}

fn table<'a>(page: &mut String, args: impl Iterator<Item = &'a clap::Arg>) {
    page.push_str("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in args {
        let (Some(long), false) = (arg.get_long(), arg.is_hide_set()) else {
            continue;
        };
        if long == "help" || long == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|name| format!("`{}`", name.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|text| one_line(&text.to_string()))
            .unwrap_or_default();
        page.push_str(&format!("| `--{long}` | {env} | {default} | {help} |\n"));
    }
}

/// A help text as one table cell: lines joined, pipes escaped.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The committed OpenAPI documents, by path under the repository, as the
/// listeners serve them.
pub fn openapi_documents() -> [(&'static str, String); 2] {
    let render = |document: utoipa::openapi::OpenApi| {
        let mut json = document.to_pretty_json().unwrap_or_default();
        json.push('\n');
        json
    };
    [
        (
            "docs/openapi/registry.json",
            render(sluice_registry::api::document()),
        ),
        ("docs/openapi/v2.json", render(sluice_gateway::server::document())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `generated` is the committed file at `path`, or the test fails (and
    /// writes it under `SLUICE_BLESS`).
    fn assert_committed(path: &str, generated: &str) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        if std::env::var_os("SLUICE_BLESS").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, generated).unwrap();
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} is stale: run `SLUICE_BLESS=1 cargo test -p sluice reference` and commit it"
        );
    }

    #[test]
    fn the_committed_reference_is_the_clap_tree() {
        assert_committed("docs/configuration.md", &configuration_reference());
    }

    #[test]
    fn the_committed_openapi_documents_are_the_code() {
        for (path, generated) in openapi_documents() {
            assert_committed(path, &generated);
        }
    }

    #[test]
    fn every_flag_of_serve_has_a_row() {
        let page = configuration_reference();
        for flag in [
            "--listen",
            "--compute-queue",
            "--data-dir",
            "--max-connections",
            "--tls-cert",
            "--log",
        ] {
            assert!(page.contains(&format!("| `{flag}` |")), "{flag} has no row");
        }
        assert!(page.contains("| `--compute-queue` | `SLUICE_COMPUTE_QUEUE` | `1024` |"));
    }
}
