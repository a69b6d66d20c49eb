//! Where bytes live: artifacts, and the prediction and feedback logs that
//! gateways write and the registry joins. A local directory by default; with
//! `--store s3://bucket/prefix`, an S3-compatible bucket under a prefix. The
//! code that reads and writes them sees one `object_store` either way.
//!
//! S3 settings come from the AWS variables `object_store` reads:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, a pod's web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`,
//! `AWS_ROLE_ARN`) or the instance's role, and for a server that is not AWS
//! (MinIO, Ceph) `AWS_ENDPOINT_URL`, with `AWS_ALLOW_HTTP=true` when it
//! speaks plain HTTP. Not `AWS_PROFILE`, `~/.aws` or `AWS_CA_BUNDLE`: a
//! server behind a private CA is not reachable yet.
//!
//! Requests are bounded so that a store that is down answers in seconds,
//! not after `object_store`'s three minutes of retries: [`Traffic::Logs`]
//! (small segments, written in the background or while a client waits for
//! its feedback to be stored) and [`Traffic::Artifacts`] (up to a GiB, no
//! more than half an hour, and no more than a minute without progress).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

/// Where predictions and feedback live: written by gateways, read by the
/// registry. Directories, or prefixes of `--store`'s bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirs {
    pub predictions: Location,
    pub feedback: Location,
}

/// A directory, or a prefix in a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn parse_store(url: &str) -> Result<Location, String> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!("--store {url:?}: expected s3://bucket/prefix"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, enough to catch a typo before a request.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
            });
        if !valid_bucket {
            return Err(format!(
                "--store {url:?}: {bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            ));
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The location `name` under this one.
    pub fn child(&self, name: &str) -> Location {
        match self {
            Location::Dir(dir) => Location::Dir(dir.join(name)),
            Location::S3 { bucket, prefix } if prefix.is_empty() => Location::S3 {
                bucket: bucket.clone(),
                prefix: name.to_string(),
            },
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: format!("{prefix}/{name}"),
            },
        }
    }

    /// The directory, when it is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(dir) => Some(dir),
            Location::S3 { .. } => None,
        }
    }

    /// The store rooted here (a directory is created when missing). Nothing
    /// is sent to S3 yet: a wrong credential shows on the first request.
    pub fn open(&self, traffic: Traffic) -> std::io::Result<Arc<dyn ObjectStore>> {
        match self {
            Location::Dir(dir) => {
                std::fs::create_dir_all(dir)?;
                let store = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
                Ok(Arc::new(store))
            }
            Location::S3 { bucket, prefix } => {
                // Set key by key: the environment's client settings
                // (AWS_ALLOW_HTTP) stay; a whole ClientOptions would drop them.
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(traffic.retry());
                for (key, value) in traffic.client_settings() {
                    builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                let store = builder.build().map_err(std::io::Error::other)?;
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
                }
            }
        }
    }
}

/// What a store carries, for its timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Prediction and feedback log segments: small, and bounded whole.
    Logs,
    /// Model artifacts: large, bounded by progress, not by size.
    Artifacts,
}

impl Traffic {
    /// Connect, whole-request and between-reads timeouts (a GiB artifact
    /// has half an hour, as long as bytes keep coming).
    fn client_settings(self) -> [(ClientConfigKey, &'static str); 3] {
        let (timeout, read_timeout) = match self {
            Traffic::Logs => ("10s", "10s"),
            Traffic::Artifacts => ("30m", "60s"),
        };
        [
            (ClientConfigKey::ConnectTimeout, "5s"),
            (ClientConfigKey::Timeout, timeout),
            (ClientConfigKey::ReadTimeout, read_timeout),
        ]
    }

    fn retry(self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: match self {
                Traffic::Logs => Duration::from_secs(10),
                Traffic::Artifacts => Duration::from_secs(60),
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(formatter, "{}", dir.display()),
            Location::S3 { bucket, prefix } => write!(formatter, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn store_urls_name_a_bucket_and_a_prefix() {
        let store = Location::parse_store("s3://ml-prod/sluice/").unwrap();
        assert_eq!(
            store.child("artifacts"),
            Location::S3 {
                bucket: "ml-prod".into(),
                prefix: "sluice/artifacts".into()
            }
        );
        let bare = Location::parse_store("s3://ml-prod").unwrap();
        assert_eq!(bare.child("feedback").to_string(), "s3://ml-prod/feedback");
        assert!(Location::parse_store("gs://bucket").is_err());
        assert!(Location::parse_store("s3://Bad_Bucket/x").is_err());
    }
}
