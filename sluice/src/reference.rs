//! `docs/configuration.md`, generated from the clap tree: every flag of
//! `sluice serve` and `sluice registry` with its variable, its default and
//! its help, so the page cannot drift from what the binary parses. A test
//! fails when the committed page is stale; `SLUICE_BLESS=1 cargo test -p
//! sluice reference` writes it again.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_the_clap_tree() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let generated = configuration_reference();
        if std::env::var_os("SLUICE_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/configuration.md is stale: run `SLUICE_BLESS=1 cargo test -p sluice reference` and commit it"
        );
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
