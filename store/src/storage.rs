//! Where the Parquet segments live: the storage root, a URL.
//!
//! - `file:///path` or no root at all (the default, `DATA/tables`): a local directory. Writes
//!   go to a temp file that is fsynced and renamed into place, then the directory is
//!   fsynced (`object_store`'s local store does not fsync, so local roots use `std::fs`).
//! - `s3://bucket/prefix`: any S3-compatible object store through the `object_store` crate.
//!   A PUT is atomic, so a segment is either whole or absent, as locally. Options, including
//!   credentials, are `[store.root_options]` (`aws_endpoint`, `aws_region`,
//!   `aws_allow_http`, `aws_access_key_id`, …); the binary fills in what they lack from the
//!   `AWS_*` environment variables. Secrets are never written to the data directory.
//!
//! Only segments move: the write-ahead log, the search index, the open-session snapshot
//! and quarantined files stay in the local data directory (they need fsync, mmap or both).
//! The store's code is synchronous; calls to a remote store run on this module's own small
//! tokio runtime (also the one its HTTP connections live on, so queries on any runtime can
//! use them) and the caller waits for them.
//!
//! Segments are addressed by their *key*: the path under the root with `/`, like
//! `events/date=2026-11-25/hour=09/part-…-1a2b3c4d.parquet` (the search index uses the same
//! keys, so it does not care where the root is).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a data directory records its root (so readers such as `tunnelwatch sql --data` find
/// the segments, and a writer configured with another root is stopped).
const RECORD: &str = "state/storage.json";

/// The storage root of one store.
#[derive(Debug)]
pub(crate) struct Storage {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Local(PathBuf),
    Remote(Box<Remote>),
}

#[derive(Debug)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `scheme://bucket`, what DataFusion looks the store up by.
    base: url::Url,
    /// The root's path inside the bucket (may be empty).
    prefix: ObjectPath,
    /// The root as configured, for messages.
    root: String,
    /// Runs every call to the store (and its HTTP connections); shut down without waiting
    /// when the store is dropped, which may happen inside another runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What `DATA/state/storage.json` holds: the root and its options without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    root: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// Options never written to the data directory (they come from the configuration or the
/// environment each time).
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "access_key_id",
        "credentials",
    ]
    .iter()
    .any(|word| key.contains(word))
}

impl Storage {
    /// The storage root of the data directory `data_dir`: `root` if configured (recorded
    /// in the data directory by a writer; a different recorded root is an error), else the
    /// recorded one, else `DATA/tables`.
    pub(crate) fn open(
        data_dir: &Path,
        root: Option<&str>,
        options: &BTreeMap<String, String>,
        writable: bool,
    ) -> Result<Storage> {
        let record_path = data_dir.join(RECORD);
        let recorded: Option<Recorded> = durable::read_json(&record_path, "storage root record")?;
        let (root, options) = match (root, &recorded) {
            (Some(root), Some(recorded)) if recorded.root != root => {
                return Err(Error::Config(format!(
                    "the data directory {} keeps its tables at {}, but the configuration says [store] root = {root:?}; \
                     move the segments and edit {} if that is intended",
                    data_dir.display(),
                    recorded.root,
                    record_path.display()
                )));
            }
            (Some(root), _) => (Some(root.to_owned()), options.clone()),
            (None, Some(recorded)) => {
                let mut merged = recorded.options.clone();
                merged.extend(options.clone());
                (Some(recorded.root.clone()), merged)
            }
            (None, None) => (None, options.clone()),
        };
        let Some(root) = root else {
            return Ok(Storage {
                kind: Kind::Local(data_dir.join("tables")),
            });
        };
        let storage = Storage::for_root(&root, &options)?;
        if writable && recorded.is_none() {
            let record = Recorded {
                root: root.clone(),
                options: options
                    .iter()
                    .filter(|(key, _)| !is_secret(key))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            };
            let bytes = serde_json::to_vec_pretty(&record)
                .map_err(|error| Error::Internal(format!("cannot encode the root: {error}")))?;
            durable::write_atomic(&record_path, &bytes)?;
        }
        Ok(storage)
    }

    /// The storage for a root URL.
    fn for_root(root: &str, options: &BTreeMap<String, String>) -> Result<Storage> {
        match check_root(root, options)? {
            Checked::Local(dir) => Ok(Storage {
                kind: Kind::Local(dir),
            }),
            Checked::S3 {
                builder,
                base,
                prefix,
            } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tw-object-store")
                    .enable_all()
                    .build()
                    .map_err(|error| {
                        Error::Internal(format!("cannot start the object store runtime: {error}"))
                    })?;
                let store = (*builder)
                    .with_http_connector(object_store::client::SpawnedReqwestConnector::new(
                        runtime.handle().clone(),
                    ))
                    .build()
                    .map_err(|error| Error::Config(format!("[store] root {root:?}: {error}")))?;
                Ok(Storage {
                    kind: Kind::Remote(Box::new(Remote {
                        store: Arc::new(store),
                        base,
                        prefix,
                        root: root.trim_end_matches('/').to_owned(),
                        runtime: Some(runtime),
                    })),
                })
            }
        }
    }

    /// Whether segments live in an object store.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.kind, Kind::Remote(_))
    }

    /// Where a key is, for messages and reports: a path or a URL.
    pub(crate) fn describe(&self, key: &str) -> PathBuf {
        match &self.kind {
            Kind::Local(root) => root.join(key),
            Kind::Remote(remote) => PathBuf::from(format!("{}/{key}", remote.root)),
        }
    }

    /// Stores `bytes` under `key`, atomically: a reader sees the whole object or nothing.
    pub(crate) fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.kind {
            Kind::Local(root) => Ok(durable::write_atomic(&root.join(key), &bytes)?),
            Kind::Remote(remote) => {
                let location = remote.location(key);
                let store = remote.store.clone();
                remote.run("write", key, async move {
                    store
                        .put(&location, PutPayload::from(bytes))
                        .await
                        .map(drop)
                })
            }
        }
    }

    /// The whole object under `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Bytes> {
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(key);
                std::fs::read(&path)
                    .map(Bytes::from)
                    .map_err(|error| Error::io("read", &path, error))
            }
            Kind::Remote(remote) => {
                let location = remote.location(key);
                let store = remote.store.clone();
                remote.run("read", key, async move {
                    store.get(&location).await?.bytes().await
                })
            }
        }
    }

    /// The Parquet footer of the segment under `key` (reading only the file's tail).
    pub(crate) fn footer(&self, key: &str) -> Result<ParquetMetaData> {
        let corrupt = |detail: String| Error::corrupt("parquet file", self.describe(key), detail);
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(key);
                let file =
                    std::fs::File::open(&path).map_err(|error| Error::io("open", &path, error))?;
                ParquetMetaDataReader::new()
                    .parse_and_finish(&file)
                    .map_err(|error| corrupt(error.to_string()))
            }
            Kind::Remote(remote) => {
                let location = remote.location(key);
                let store = remote.store.clone();
                let (size, tail) = remote.run("read the footer of", key, async move {
                    let size = store.head(&location).await?.size;
                    let tail = store
                        .get_range(&location, size.saturating_sub(8)..size)
                        .await?;
                    Ok((size, tail))
                })?;
                let metadata_len = footer_length(&tail).map_err(corrupt)?;
                if metadata_len + 8 > size {
                    return Err(corrupt(format!(
                        "its footer claims {metadata_len} bytes of metadata in a file of {size} bytes"
                    )));
                }
                let location = remote.location(key);
                let store = remote.store.clone();
                let metadata = remote.run("read the footer of", key, async move {
                    store
                        .get_range(&location, size - 8 - metadata_len..size - 8)
                        .await
                })?;
                ParquetMetaDataReader::decode_metadata(&metadata)
                    .map_err(|error| corrupt(error.to_string()))
            }
        }
    }

    /// Deletes the object under `key`; one already gone is fine.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(key);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(Error::io("delete", &path, error)),
                }
            }
            Kind::Remote(remote) => {
                let location = remote.location(key);
                let store = remote.store.clone();
                remote.run("delete", key, async move {
                    match store.delete(&location).await {
                        Err(object_store::Error::NotFound { .. }) => Ok(()),
                        other => other,
                    }
                })
            }
        }
    }

    /// Removes the directory `dir_key` and then its parent if they are empty (locally, after
    /// deleting a partition's files; an object store has no directories).
    pub(crate) fn remove_empty_dirs(&self, dir_key: &str) {
        if let Kind::Local(root) = &self.kind {
            let dir = root.join(dir_key);
            if std::fs::remove_dir(&dir).is_ok()
                && let Some(parent) = dir.parent()
            {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// The keys of the `.parquet` objects of one table (files directly in it and in its
    /// `date=…/hour=…` partitions; other entries are the caller's to judge). Locally, temp
    /// files of an interrupted write are removed when `clean` is set.
    pub(crate) fn list(&self, table: &str, clean: bool) -> Result<Vec<String>> {
        match &self.kind {
            Kind::Local(root) => {
                let mut keys = Vec::new();
                list_local(root, Path::new(table), 0, clean, &mut keys)?;
                Ok(keys)
            }
            Kind::Remote(remote) => {
                let prefix = remote.location(table);
                let store = remote.store.clone();
                let objects = remote.run("list", table, async move {
                    store.list(Some(&prefix)).try_collect::<Vec<_>>().await
                })?;
                let skip = remote.prefix.parts().count();
                Ok(objects
                    .into_iter()
                    .map(|object| {
                        object
                            .location
                            .parts()
                            .skip(skip)
                            .map(|part| part.as_ref().to_owned())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .filter(|key| key.ends_with(".parquet"))
                    .collect())
            }
        }
    }

    /// The URL DataFusion scans for `key`.
    pub(crate) fn scan_url(&self, key: &str) -> String {
        match &self.kind {
            Kind::Local(root) => root.join(key).to_string_lossy().into_owned(),
            Kind::Remote(remote) => {
                let location = remote.location(key);
                format!("{}/{location}", remote.base.as_str().trim_end_matches('/'))
            }
        }
    }

    /// Makes the remote store known to a query's session (a local root needs nothing).
    pub(crate) fn register(&self, ctx: &SessionContext) {
        if let Kind::Remote(remote) = &self.kind {
            ctx.register_object_store(&remote.base, remote.store.clone());
        }
    }
}

/// A root that passed [`check_root`].
pub(crate) enum Checked {
    Local(PathBuf),
    S3 {
        builder: Box<object_store::aws::AmazonS3Builder>,
        base: url::Url,
        prefix: ObjectPath,
    },
}

/// Checks a root URL and its options without touching the network or starting anything
/// (what `Config::validate`, and so `tunnelwatch check-config`, runs): the scheme, the path,
/// every option's name, and that the S3 client can be built from them.
pub(crate) fn check_root(root: &str, options: &BTreeMap<String, String>) -> Result<Checked> {
    let url = url::Url::parse(root).map_err(|error| {
        Error::Config(format!(
            "[store] root {root:?} is not a URL ({error}); use file:///path or s3://bucket/prefix"
        ))
    })?;
    match url.scheme() {
        // Options (perhaps from AWS_* in the environment) mean nothing here;
        // `Config::validate` refuses them in the configuration itself.
        "file" => url.to_file_path().map(Checked::Local).map_err(|()| {
            Error::Config(format!(
                "[store] root {root:?} is not a local absolute path"
            ))
        }),
        "s3" | "s3a" => {
            // Only what the configuration says (the binary adds AWS_* from the
            // environment): the library reads no globals.
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_url(root)
                .with_retry(retry_config());
            for (key, value) in options {
                let config_key = key.parse().map_err(|_| {
                    Error::Config(format!(
                        "[store.root_options] has an unknown S3 option `{key}` (e.g. aws_endpoint, aws_region, aws_allow_http)"
                    ))
                })?;
                builder = builder.with_config(config_key, value);
            }
            // Building the client checks the values (an endpoint that is not a URL, a
            // bucket name missing) and sends nothing.
            builder
                .clone()
                .build()
                .map_err(|error| Error::Config(format!("[store] root {root:?}: {error}")))?;
            let host = url.host_str().unwrap_or_default();
            let base = url::Url::parse(&format!("{}://{host}", url.scheme()))
                .map_err(|error| Error::Config(format!("[store] root {root:?}: {error}")))?;
            let prefix = ObjectPath::from_url_path(url.path()).map_err(|error| {
                Error::Config(format!("[store] root {root:?} has a bad path: {error}"))
            })?;
            Ok(Checked::S3 {
                builder: Box::new(builder),
                base,
                prefix,
            })
        }
        other => Err(Error::Config(format!(
            "[store] root {root:?}: unsupported scheme `{other}` (use file:// or s3://)"
        ))),
    }
}

impl Remote {
    fn location(&self, key: &str) -> ObjectPath {
        key.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.clone().join(part))
    }

    /// Runs `work` on this store's runtime and waits for it (from any thread, inside a
    /// runtime or not).
    fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        key: &str,
        work: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(Error::Internal(
                "the object store runtime is gone".to_owned(),
            ));
        };
        let task = runtime.spawn(work);
        let outcome = futures::executor::block_on(task)
            .map_err(|error| Error::Internal(format!("object store task failed: {error}")))?;
        outcome.map_err(|source| Error::ObjectStore {
            action,
            location: format!("{}/{key}", self.root),
            source,
        })
    }
}

/// Retries for object store calls: a few, quickly. A flush that fails is tried again by the
/// pipeline (the rows wait in the WAL), so a long retry loop would only hold it up.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
    }
}

/// The metadata length a Parquet file's last 8 bytes declare (`<u32 LE length>PAR1`).
fn footer_length(tail: &[u8]) -> std::result::Result<u64, String> {
    let Ok(tail) = <[u8; 8]>::try_from(tail) else {
        return Err(format!(
            "it is {} bytes long, shorter than a footer",
            tail.len()
        ));
    };
    if &tail[4..] != b"PAR1" {
        return Err("it does not end in the Parquet magic `PAR1`".to_owned());
    }
    Ok(u64::from(u32::from_le_bytes([
        tail[0], tail[1], tail[2], tail[3],
    ])))
}

/// Collects the `.parquet` files under `root/dir` (depth 0: the table, 1: `date=…`, 2:
/// `hour=…`), as keys.
fn list_local(
    root: &Path,
    dir: &Path,
    depth: usize,
    clean: bool,
    keys: &mut Vec<String>,
) -> Result<()> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io("list", &full, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list", &full, error))?;
        let file_type = entry
            .file_type()
            .map_err(|error| Error::io("stat", entry.path(), error))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let wanted_dir = match depth {
            0 => "date=",
            1 => "hour=",
            _ => "",
        };
        if file_type.is_dir() && !wanted_dir.is_empty() && name.starts_with(wanted_dir) {
            list_local(root, &dir.join(&name), depth + 1, clean, keys)?;
        } else if file_type.is_file() {
            if name.ends_with(".parquet.tmp") && clean {
                let path = entry.path();
                std::fs::remove_file(&path)
                    .map_err(|error| Error::io("remove leftover", &path, error))?;
            } else if name.ends_with(".parquet") {
                let key = dir
                    .join(&name)
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                keys.push(key);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_lengths_are_checked() {
        assert_eq!(footer_length(b"\x10\0\0\0PAR1"), Ok(16));
        assert!(footer_length(b"\x10\0\0\0PAR2").is_err());
        assert!(footer_length(b"PAR1").is_err());
        assert!(footer_length(b"").is_err());
    }

    #[test]
    fn bad_roots_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let none = BTreeMap::new();
        for (root, expected) in [
            ("not a url", "is not a URL"),
            ("ftp://host/x", "unsupported scheme `ftp`"),
            ("file://relative", "not a local absolute path"),
        ] {
            let error = Storage::open(dir.path(), Some(root), &none, true).unwrap_err();
            assert!(error.to_string().contains(expected), "{root}: {error}");
        }
        let mut options = BTreeMap::new();
        options.insert("aws_no_such_option".to_owned(), "1".to_owned());
        let error = Storage::open(dir.path(), Some("s3://bucket/x"), &options, true).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown S3 option `aws_no_such_option`"),
            "{error}"
        );
        // Nothing was recorded by the failed opens.
        assert!(std::fs::metadata(dir.path().join(RECORD)).is_err());
    }

    #[test]
    fn a_recorded_root_is_kept_and_another_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let root = url::Url::from_directory_path(elsewhere.path()).unwrap();
        let none = BTreeMap::new();
        let storage = Storage::open(dir.path(), Some(root.as_str()), &none, true).unwrap();
        assert_eq!(
            storage.describe("t/a.parquet"),
            elsewhere.path().join("t/a.parquet")
        );
        // A reader without a configured root finds it.
        let reader = Storage::open(dir.path(), None, &none, false).unwrap();
        assert_eq!(
            reader.describe("t/a.parquet"),
            elsewhere.path().join("t/a.parquet")
        );
        // Another root is refused, naming both.
        let error = Storage::open(dir.path(), Some("file:///srv/other"), &none, true).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("/srv/other") && message.contains(root.as_str()),
            "{message}"
        );
    }

    #[test]
    fn check_config_catches_bad_roots_and_option_names_without_the_network() {
        for (root, key, expected) in [
            (
                "s3://bucket/p",
                "aws_regoin",
                "unknown S3 option `aws_regoin`",
            ),
            ("gs://bucket/p", "", "unsupported scheme `gs`"),
        ] {
            let mut config = crate::Config::for_dir("/tmp/x");
            config.root = Some(root.to_owned());
            if !key.is_empty() {
                config
                    .root_options
                    .insert(key.to_owned(), "eu-west-1".to_owned());
            }
            let error = config.validate().unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{root} {key}: {error}"
            );
        }
        let mut config = crate::Config::for_dir("/tmp/x");
        config.root = Some("s3://bucket/p".to_owned());
        config.root_options.insert(
            "aws_endpoint".to_owned(),
            "http://127.0.0.1:9000".to_owned(),
        );
        config.validate().unwrap();
    }

    #[test]
    fn options_for_a_file_root_are_a_configuration_error() {
        let mut config = crate::Config::for_dir("/tmp/x");
        config.root = Some("file:///srv/tunnelwatch".to_owned());
        config
            .root_options
            .insert("aws_region".to_owned(), "eu-west-1".to_owned());
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("not to a file:// root"),
            "{error}"
        );
    }

    #[test]
    fn secrets_are_never_recorded() {
        assert!(is_secret("aws_secret_access_key"));
        assert!(is_secret("AWS_ACCESS_KEY_ID"));
        assert!(is_secret("aws_session_token"));
        assert!(!is_secret("aws_endpoint"));
        assert!(!is_secret("aws_region"));
    }

    #[test]
    fn local_puts_are_atomic_and_listed_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), None, &BTreeMap::new(), true).unwrap();
        storage
            .put("flows/date=2026-11-25/hour=09/a.parquet", b"PAR1".to_vec())
            .unwrap();
        storage.put("flows/old.parquet", b"PAR1".to_vec()).unwrap();
        // A leftover temp file and a stray directory.
        std::fs::write(dir.path().join("tables/flows/b.parquet.tmp"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("tables/flows/junk/hour=01")).unwrap();
        std::fs::write(dir.path().join("tables/flows/junk/hour=01/c.parquet"), b"x").unwrap();
        let mut keys = storage.list("flows", true).unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                "flows/date=2026-11-25/hour=09/a.parquet",
                "flows/old.parquet"
            ]
        );
        assert!(std::fs::metadata(dir.path().join("tables/flows/b.parquet.tmp")).is_err());
        assert_eq!(
            storage
                .get("flows/date=2026-11-25/hour=09/a.parquet")
                .unwrap(),
            Bytes::from_static(b"PAR1")
        );
        storage.delete("flows/old.parquet").unwrap();
        storage.delete("flows/old.parquet").unwrap();
        assert_eq!(storage.list("flows", false).unwrap().len(), 1);
    }
}
