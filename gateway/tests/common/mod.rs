//! What the process tests share: reading where a `sluice` process listens.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

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
