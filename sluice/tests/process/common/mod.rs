//! What the process tests share: the `sluice` command line cut off from the
//! developer's own settings, reading where a `sluice` process listens,
//! waiting for it to be ready, and killing it however the test ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The `sluice` binary as a client command, with none of the variables a
/// developer's shell may set (registry, token, data dir, context) and never
/// their contexts file: a test says what it means.
pub fn sluice_cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for variable in [
        "SLUICE_REGISTRY_URL",
        "SLUICE_TOKEN",
        "SLUICE_DATA_DIR",
        "SLUICE_TOKENS_FILE",
        "SLUICE_CONTEXT",
    ] {
        command.env_remove(variable);
    }
    command.env("SLUICE_CONFIG", "/nonexistent/sluice/config.toml");
    command
}

/// A child process killed (SIGKILL) and reaped when dropped: a failed
/// assertion must not leave a server running.
pub struct Running(pub Child);

impl Running {
    /// SIGKILL: no drain, no goodbye to the registry.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `{base}/v2/health/ready` until it answers 200; panics after `limit`.
pub async fn wait_ready(http: &reqwest::Client, base: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let ready = http.get(format!("{base}/v2/health/ready")).send().await;
        if ready.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not ready in {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the child's JSON log (stderr) until each of `messages` has been
/// logged, and returns each one's `addr` field: the ephemeral ports.
pub fn listening_addresses(child: &mut Child, messages: &[&'static str]) -> HashMap<&'static str, String> {
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    let wanted = messages.to_vec();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = entry["fields"]["message"].as_str().unwrap_or_default();
            if let Some(found) = wanted.iter().find(|wanted| **wanted == message) {
                let addr = entry["fields"]["addr"].as_str().unwrap_or_default().to_string();
                let _ = addr_tx.send((*found, addr));
            }
        }
    });
    let mut addresses = HashMap::new();
    while addresses.len() < messages.len() {
        let (message, addr) = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the process never logged all of {messages:?}"));
        addresses.insert(message, addr);
    }
    addresses
}
