//! The object store behind a URL (`s3://bucket/prefix`, `file:///dir`, `memory://`) and the key
//! layout: `<root>/<hash>/<topic-id>/<partition>/manifest.json` and
//! `.../segments/<base offset>-<leader epoch>-<upload id>.seg`. The 8-hex-digit hash prefix
//! spreads partitions over S3 key ranges; the topic id (not the name) makes a deleted and
//! recreated topic start afresh.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use url::Url;
use uuid::Uuid;

use crate::error::{Error, Result};

/// How to reach the object store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// `s3://bucket/prefix`, `file:///absolute/dir` or `memory://`.
    pub url: String,
    /// S3 endpoint for S3-compatible servers (e.g. `http://127.0.0.1:9000`); unset = AWS.
    pub endpoint: Option<String>,
    /// S3 region; unset = `AWS_REGION`/`AWS_DEFAULT_REGION` or us-east-1.
    pub region: Option<String>,
    /// Access key; unset = the standard AWS environment variables / instance credentials.
    pub access_key_id: Option<String>,
    /// Secret key.
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints.
    pub allow_http: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Retries of a failed request inside object_store (with its own backoff).
    pub max_retries: usize,
}

/// A topic partition as tiered storage names it: by topic id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic id.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// An object store plus the root path under which Fjord keeps its objects.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// Conditional updates (If-Match) work; false for file:// (single writer, plain overwrite).
    conditional: bool,
}

impl RemoteStore {
    /// Opens the store a URL names.
    pub fn open(config: &StoreConfig) -> Result<RemoteStore> {
        let url = Url::parse(&config.url).map_err(|e| Error::Config(format!("bad url {:?}: {e}", config.url)))?;
        let root = Path::from_url_path(url.path().trim_start_matches('/'))
            .map_err(|e| Error::Config(format!("bad path in url {:?}: {e}", config.url)))?;
        match url.scheme() {
            "memory" => Ok(Self::new(Arc::new(InMemory::new()), Path::default(), true)),
            "file" => {
                let dir = url.path();
                std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("cannot create {dir}: {e}")))?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| Error::Config(format!("bad file url {:?}: {e}", config.url)))?;
                Ok(Self::new(Arc::new(fs), Path::default(), false))
            }
            "s3" | "s3a" => {
                let bucket = url
                    .host_str()
                    .ok_or_else(|| Error::Config(format!("no bucket in {:?}", config.url)))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &config.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &config.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &config.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let timeout = if config.request_timeout.is_zero() {
                    Duration::from_secs(30)
                } else {
                    config.request_timeout
                };
                builder = builder
                    .with_allow_http(config.allow_http)
                    .with_client_options(
                        ClientOptions::new()
                            .with_allow_http(config.allow_http)
                            .with_timeout(timeout)
                            .with_connect_timeout(Duration::from_secs(5)),
                    )
                    .with_retry(RetryConfig {
                        max_retries: config.max_retries,
                        retry_timeout: timeout * 2,
                        ..RetryConfig::default()
                    });
                let s3 = builder
                    .build()
                    .map_err(|e| Error::Config(format!("s3 store {:?}: {e}", config.url)))?;
                Ok(Self::new(Arc::new(s3), root, true))
            }
            other => Err(Error::Config(format!(
                "unsupported object store scheme {other:?} (use s3://, file:// or memory://)"
            ))),
        }
    }

    /// Wraps an existing store (tests).
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, conditional: bool) -> RemoteStore {
        RemoteStore {
            store,
            root,
            conditional,
        }
    }

    /// The underlying object store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn conditional(&self) -> bool {
        self.conditional
    }

    /// `<root>/<hash>/<topic-id>/<partition>`.
    pub fn partition_prefix(&self, tp: &TopicPartition) -> Path {
        let name = format!("{}/{}", tp.topic_id.simple(), tp.partition);
        let hash = format!("{:08x}", crc32c::crc32c(name.as_bytes()));
        self.root
            .clone()
            .join(hash)
            .join(tp.topic_id.simple().to_string())
            .join(tp.partition.to_string())
    }

    /// The partition's manifest.
    pub fn manifest_path(&self, tp: &TopicPartition) -> Path {
        self.partition_prefix(tp).join("manifest.json")
    }

    /// Folder of the partition's segment objects.
    pub fn segments_prefix(&self, tp: &TopicPartition) -> Path {
        self.partition_prefix(tp).join("segments")
    }

    /// A fresh object name for one upload attempt.
    pub fn new_segment_name(base_offset: i64, leader_epoch: i32) -> String {
        format!("{base_offset:020}-{leader_epoch}-{}.seg", Uuid::new_v4().simple())
    }

    /// Full path of a segment object by name.
    pub fn segment_path(&self, tp: &TopicPartition, name: &str) -> Path {
        self.segments_prefix(tp).join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spread_by_hash_and_named_by_topic_id() {
        let store = RemoteStore::open(&StoreConfig {
            url: "memory://".into(),
            ..StoreConfig::default()
        })
        .expect("memory store");
        let id = Uuid::new_v4();
        let a = store.manifest_path(&TopicPartition {
            topic_id: id,
            partition: 0,
        });
        let b = store.manifest_path(&TopicPartition {
            topic_id: id,
            partition: 1,
        });
        assert!(a.as_ref().contains(&id.simple().to_string()));
        assert!(a.as_ref().ends_with("/0/manifest.json"));
        assert_ne!(a.as_ref().split('/').next(), b.as_ref().split('/').next());
        let n1 = RemoteStore::new_segment_name(5, 1);
        assert!(n1.starts_with("00000000000000000005-1-"));
        assert_ne!(n1, RemoteStore::new_segment_name(5, 1));
    }

    #[test]
    fn unknown_schemes_and_bad_urls_are_refused() {
        let bad = |url: &str| {
            RemoteStore::open(&StoreConfig {
                url: url.into(),
                ..StoreConfig::default()
            })
            .expect_err("refused")
            .to_string()
        };
        assert!(bad("ftp://x/y").contains("unsupported"));
        assert!(bad("not a url").contains("bad url"));
    }
}
