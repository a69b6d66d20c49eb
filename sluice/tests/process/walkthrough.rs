//! The release walkthrough (`docs/releasing.md`) run as printed: every
//! `console` block's `$ ` commands go, in order, to one bash against a
//! fresh `sluice serve` on an empty data directory with the shipped
//! example policy, and each command's output (stdout and stderr, times
//! aside) must be the page's. `SLUICE_BLESS=1` writes what ran into the page.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PAGE: &str = "docs/releasing.md";

/// One `$ ` command of the page and the output shown under it.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The page's console steps, in order.
fn steps(page: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for line in page.lines() {
        if !in_console {
            in_console = line.trim_end() == "```console";
            continue;
        }
        if line.trim_end() == "```" {
            in_console = false;
            continue;
        }
        if continued {
            let step = steps.last_mut().expect("a continuation follows a command");
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
            continued = command.ends_with('\\');
        } else {
            let step = steps.last_mut().expect("a console block opens with a command");
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// Times vary from run to run; nothing else may.
fn normalized(lines: &[String]) -> Vec<String> {
    lines.iter().map(|line| mask_times(line)).collect()
}

/// Each RFC 3339 time (`2026-12-07T01:02:03.456Z`) as `<time>`.
fn mask_times(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut index = 0;
    while index < bytes.len() {
        let starts_time = bytes.len() - index >= 20
            && bytes[index..index + 4].iter().all(u8::is_ascii_digit)
            && bytes[index + 4] == b'-'
            && bytes[index + 10] == b'T'
            && bytes[index + 13] == b':';
        if starts_time {
            let mut end = index + 19;
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                end += 1;
            }
            if end < bytes.len() && bytes[end] == b'Z' {
                out.push_str("<time>");
                index = end + 1;
                continue;
            }
        }
        // Whole characters: the outputs hold `→` and `…`.
        let character = line[index..].chars().next().unwrap_or_default();
        out.push(character);
        index += character.len_utf8().max(1);
    }
    out
}

#[test]
fn times_are_masked_and_the_rest_kept_whole() {
    assert_eq!(
        mask_times("1 → 2 at 2026-12-07T01:02:03.456Z, until 2027-01-06T00:00:00Z…"),
        "1 → 2 at <time>, until <time>…"
    );
    assert_eq!(mask_times("revision 2026-12"), "revision 2026-12");
}

#[test]
fn the_release_walkthrough_runs_as_printed() {
    let root = repo_root();
    let page_path = root.join(PAGE);
    let page = std::fs::read_to_string(&page_path).unwrap();
    let steps = steps(&page);
    assert!(steps.len() > 10, "the page's console steps: {}", steps.len());

    // A fresh serve, as the page starts it, on ports of its own.
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("release-data");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let mut serve = Command::new(&binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--data-dir"])
        .arg(&data)
        .arg("--policy-file")
        .arg(root.join("examples/policies/governance.toml"))
        .env_remove("ORT_DYLIB_PATH")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addresses =
        common::listening_addresses(&mut serve, &["sluice is listening", "registry is listening"]);
    let serve = common::Running(serve);

    // One bash for every step, so that what one sets the next sees; each
    // step's output between markers, with its exit status.
    // The page runs from the repository's root; here, from a folder that
    // sees its files, so that what the steps write stays out of the tree.
    for shared in ["models", "examples"] {
        std::os::unix::fs::symlink(root.join(shared), work.path().join(shared)).unwrap();
    }
    let mut script = String::new();
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '@@@step {index}\\n'\n{{ {}\n}} 2>&1\nprintf '@@@exit %s\\n' \"$?\"\n",
            step.command
        ));
    }
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .env(
            "SLUICE_REGISTRY_URL",
            format!("http://{}", addresses["registry is listening"]),
        )
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_CONFIG", "/nonexistent/sluice/config.toml")
        .env("HOME", work.path())
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_CONTEXT")
        .current_dir(work.path())
        .output()
        .unwrap();
    drop(serve);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();

    // Each step's lines and exit status.
    let mut ran: Vec<(Vec<String>, i32)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("@@@step ") {
            ran.push((Vec::new(), -1));
        } else if let Some(status) = line.strip_prefix("@@@exit ") {
            ran.last_mut().unwrap().1 = status.parse().unwrap();
        } else if let Some((lines, _)) = ran.last_mut() {
            lines.push(line.to_string());
        }
    }
    assert_eq!(
        ran.len(),
        steps.len(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&page_path, blessed(&page, &ran)).unwrap();
        return;
    }
    for (step, (lines, status)) in steps.iter().zip(&ran) {
        let shown_failing = step.expected.iter().any(|line| line.starts_with("error:"));
        assert_eq!(
            *status != 0,
            shown_failing,
            "`{}` exited {status}; the page shows {}",
            step.command,
            if shown_failing { "a failure" } else { "success" }
        );
        assert_eq!(
            normalized(lines),
            normalized(&step.expected),
            "`{}` printed otherwise than {PAGE} shows (SLUICE_BLESS=1 rewrites the page)",
            step.command
        );
    }
}

/// The page with each step's output replaced by what ran.
fn blessed(page: &str, ran: &[(Vec<String>, i32)]) -> String {
    let mut out = String::new();
    let mut in_console = false;
    let mut continued = false;
    let mut step = 0;
    for line in page.lines() {
        let console_line = in_console && line.trim_end() != "```";
        if !console_line {
            in_console = in_console && line.trim_end() != "```" || line.trim_end() == "```console";
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if continued {
            out.push_str(line);
            out.push('\n');
            continued = line.ends_with('\\');
            if !continued {
                push_output(&mut out, &ran[step - 1].0);
            }
        } else if line.starts_with("$ ") {
            out.push_str(line);
            out.push('\n');
            step += 1;
            continued = line.ends_with('\\');
            if !continued {
                push_output(&mut out, &ran[step - 1].0);
            }
        }
        // An old output line: replaced by what ran.
    }
    out
}

fn push_output(out: &mut String, lines: &[String]) {
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
}
