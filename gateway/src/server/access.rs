//! Predict tokens: who may call which model, and how fast.
//!
//! The tokens file (`--predict-tokens-file`, TOML) holds each token's
//! sha256, never the token, with the models it may call and an optional
//! rate limit:
//!
//! ```toml
//! [[tokens]]
//! name = "checkout"            # who: in metrics and error messages
//! sha256 = "9f86d0…"           # `sluice predict-token` writes it
//! models = ["credit_risk"]     # or ["*"]: every model
//! rate_per_s = 200.0           # optional: sustained requests per second
//! burst = 400                  # optional: requests at once [default: one second's worth]
//! ```
//!
//! A model named by some token (or every model, once a token says `*`)
//! needs a token on its inference and feedback requests; the others stay
//! open, so tokens can be rolled out one deployment at a time. Health and
//! metadata endpoints never need one: probes and clients discovering a
//! model must not hold a secret.
//!
//! The check is on the hot path, so it takes no lock: a hash, a map lookup
//! (by the token's sha256, so its timing says nothing about any stored
//! token: learning a matching prefix of a hash does not help to forge the
//! token behind it), and one atomic compare-and-swap for the rate limit.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use sluice_common::secrets::{generate_token, hash_token};

use crate::error::Error;
use crate::metrics;

/// The predict tokens a gateway accepts.
#[derive(Debug, Default)]
pub struct PredictAccess {
    by_hash: HashMap<String, Grant>,
    /// Models that need a token.
    protected: HashSet<String>,
    /// A token may call every model: every model needs one.
    protects_all: bool,
}

#[derive(Debug)]
struct Grant {
    name: String,
    /// `None`: every model.
    models_opt: Option<HashSet<String>>,
    limiter_opt: Option<RateLimiter>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

impl PredictAccess {
    /// Reads and checks a tokens file: each problem is an error naming the token.
    pub fn load(path: &Path) -> Result<PredictAccess, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        PredictAccess::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    pub fn parse(text: &str) -> Result<PredictAccess, String> {
        let file: TokensFile = toml::from_str(text).map_err(|err| err.to_string())?;
        let mut access = PredictAccess::default();
        for entry in file.tokens {
            let name = entry.name;
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("token {name}: sha256 must be 64 hex digits"));
            }
            if entry.models.is_empty() {
                return Err(format!(
                    "token {name}: models is empty: name the models it may call, or \"*\""
                ));
            }
            let models_opt = if entry.models.iter().any(|model| model == "*") {
                access.protects_all = true;
                None
            } else {
                access.protected.extend(entry.models.iter().cloned());
                Some(entry.models.into_iter().collect())
            };
            let limiter_opt = match entry.rate_per_s {
                None if entry.burst.is_some() => {
                    return Err(format!("token {name}: burst needs rate_per_s"));
                }
                None => None,
                Some(rate) => {
                    Some(RateLimiter::new(rate, entry.burst).map_err(|err| format!("token {name}: {err}"))?)
                }
            };
            let grant = Grant {
                name: name.clone(),
                models_opt,
                limiter_opt,
            };
            if access
                .by_hash
                .insert(entry.sha256.to_ascii_lowercase(), grant)
                .is_some()
            {
                return Err(format!("token {name}: the same token is listed twice"));
            }
        }
        Ok(access)
    }

    /// Whether a request to `model` with these headers may go on: `Err` is
    /// the 401, 403 or 429 to answer.
    pub fn check(&self, model: &str, headers: &HeaderMap) -> Result<(), Error> {
        // Without tokens (the usual case), not even the model name is hashed.
        if self.by_hash.is_empty() || (!self.protects_all && !self.protected.contains(model)) {
            return Ok(());
        }
        let grant = self.grant(model, headers)?;
        if let Some(models) = &grant.models_opt
            && !models.contains(model)
        {
            let mut names: Vec<&str> = models.iter().map(String::as_str).collect();
            names.sort_unstable();
            return refuse(
                "forbidden",
                Error::Forbidden(format!(
                    "predict token {} may not call model {model}: it may call {}",
                    grant.name,
                    names.join(", ")
                )),
            );
        }
        if let Some(limiter) = &grant.limiter_opt
            && let Err(wait_ms) = limiter.try_acquire()
        {
            ::metrics::counter!(metrics::RATE_LIMITED, "token" => grant.name.clone()).increment(1);
            return Err(Error::RateLimited {
                token: grant.name.clone(),
                retry_after_s: wait_ms.div_ceil(1000).max(1),
            });
        }
        Ok(())
    }

    /// Before the model is known (a gRPC message names it inside): when
    /// every model needs a token, a request without a known one is refused
    /// now, as [`PredictAccess::check`] would refuse it once the message is
    /// read, so that an anonymous client holds none of the server's memory.
    pub fn check_before_model(&self, headers: &HeaderMap) -> Result<(), Error> {
        if self.by_hash.is_empty() || !self.protects_all {
            return Ok(());
        }
        self.grant("every model", headers).map(|_| ())
    }

    /// The grant of the request's token, or the 401 (naming `model`).
    fn grant(&self, model: &str, headers: &HeaderMap) -> Result<&Grant, Error> {
        let Some(token) = bearer(headers) else {
            return refuse(
                "missing",
                Error::Unauthorized(format!(
                    "model {model} needs a predict token: send 'Authorization: Bearer TOKEN'"
                )),
            );
        };
        match self.by_hash.get(&hash_token(token)) {
            Some(grant) => Ok(grant),
            None => refuse("unknown", Error::Unauthorized("unknown predict token".into())),
        }
    }
}

/// Counts a refusal by its reason.
fn refuse<T>(reason: &'static str, error: Error) -> Result<T, Error> {
    ::metrics::counter!(metrics::PREDICT_AUTH_REFUSED, "reason" => reason).increment(1);
    Err(error)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// A token bucket as the generic cell rate algorithm: one atomic holds the
/// theoretical arrival time of the next request, so admitting one is a
/// compare-and-swap, never a lock.
#[derive(Debug)]
pub struct RateLimiter {
    epoch: Instant,
    /// Nanoseconds one request costs (1 / rate).
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: the burst.
    tolerance_ns: u64,
    /// Theoretical arrival time, in nanoseconds since `epoch`.
    arrival_ns: AtomicU64,
}

impl RateLimiter {
    pub fn new(rate_per_s: f64, burst_opt: Option<u32>) -> Result<RateLimiter, String> {
        // Bounds that keep the nanosecond arithmetic far from overflow: at
        // most 1e12 ns per request, times at most 1e6 of them.
        if !(rate_per_s.is_finite() && (0.001..=1e9).contains(&rate_per_s)) {
            return Err(format!(
                "rate_per_s must be between 0.001 and 1e9, got {rate_per_s}"
            ));
        }
        let burst = burst_opt.unwrap_or_else(|| rate_per_s.ceil().min(MAX_BURST as f64) as u32);
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(format!("burst must be between 1 and {MAX_BURST}, got {burst}"));
        }
        let interval_ns = ((1e9 / rate_per_s) as u64).max(1);
        Ok(RateLimiter {
            epoch: Instant::now(),
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst),
            arrival_ns: AtomicU64::new(0),
        })
    }

    /// Takes one request's worth; `Err(ms)`: refused, retry in `ms`.
    pub fn try_acquire(&self) -> Result<(), u64> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut arrival = self.arrival_ns.load(Ordering::Relaxed);
        loop {
            let next = arrival.max(now) + self.interval_ns;
            let ahead = next - now;
            if ahead > self.tolerance_ns {
                return Err((ahead - self.tolerance_ns).div_ceil(1_000_000));
            }
            match self
                .arrival_ns
                .compare_exchange_weak(arrival, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => arrival = current,
            }
        }
    }
}

const MAX_BURST: u32 = 1_000_000;

/// Adds a token for `models` to the tokens file at `path` (created if
/// missing, owner-only) and returns it: the only time it is seen in clear.
pub fn add_token(
    path: &Path,
    name: &str,
    models: &[String],
    rate_per_s_opt: Option<f64>,
    burst_opt: Option<u32>,
) -> Result<String, String> {
    let mut file: TokensFile = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    let token = generate_token()?;
    file.tokens.push(Entry {
        name: name.to_string(),
        sha256: hash_token(&token),
        models: models.to_vec(),
        rate_per_s: rate_per_s_opt,
        burst: burst_opt,
    });
    let text = toml::to_string(&file).map_err(|err| format!("encoding the tokens file: {err}"))?;
    // Refuse what the gateway would refuse at start.
    PredictAccess::parse(&text)?;
    sluice_common::files::replace(path, &text)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn file(entries: &[(&str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(name, token, extra)| {
                format!(
                    "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\n{extra}\n",
                    hash_token(token)
                )
            })
            .collect()
    }

    #[test]
    fn only_named_models_need_a_token_and_only_their_tokens_pass() {
        let access = PredictAccess::parse(&file(&[("shop", "t-shop", "models = [\"credit\"]")])).unwrap();
        assert!(access.check("digits", &HeaderMap::new()).is_ok());
        assert!(matches!(
            access.check("credit", &HeaderMap::new()),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            access.check("credit", &headers("t-other")),
            Err(Error::Unauthorized(_))
        ));
        assert!(access.check("credit", &headers("t-shop")).is_ok());

        let access = PredictAccess::parse(&file(&[
            ("shop", "t-shop", "models = [\"credit\"]"),
            ("ops", "t-ops", "models = [\"*\"]"),
        ]))
        .unwrap();
        assert!(matches!(
            access.check("digits", &headers("t-shop")),
            Err(Error::Forbidden(_))
        ));
        assert!(access.check("digits", &headers("t-ops")).is_ok());
    }

    #[test]
    fn malformed_files_name_the_token() {
        for (text, expected) in [
            (
                "[[tokens]]\nname = \"a\"\nsha256 = \"zz\"\nmodels = [\"m\"]\n",
                "token a: sha256",
            ),
            (
                &file(&[("b", "t", "models = []")]) as &str,
                "token b: models is empty",
            ),
            (
                &file(&[("c", "t", "models = [\"m\"]\nburst = 3")]),
                "token c: burst needs rate_per_s",
            ),
            (
                &file(&[("d", "t", "models = [\"m\"]\nrate_per_s = -1.0")]),
                "token d: rate_per_s",
            ),
            (
                &file(&[("e", "t", "models = [\"m\"]"), ("f", "t", "models = [\"m\"]")]),
                "token f: the same token",
            ),
            (
                &file(&[("g", "t", "models = [\"m\"]\nrate_per_s = 1e-10")]),
                "token g: rate_per_s must be between",
            ),
            (
                &file(&[("h", "t", "models = [\"m\"]\nrate_per_s = 1.0\nburst = 2000000")]),
                "token h: burst must be between",
            ),
        ] {
            let err = PredictAccess::parse(text).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_rate_limiter_lets_a_burst_through_then_the_rate() {
        // 2/s: the sleep below may overrun by almost half a second (a
        // loaded machine) before a second token would be free.
        let limiter = RateLimiter::new(2.0, Some(5)).unwrap();
        for _ in 0..5 {
            assert!(limiter.try_acquire().is_ok());
        }
        let wait_ms = limiter.try_acquire().unwrap_err();
        assert!((1..=500).contains(&wait_ms), "{wait_ms}");
        std::thread::sleep(std::time::Duration::from_millis(wait_ms + 5));
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_err());
    }
}
