//! [`S3Snapshot`]: a `reconcile` snapshot in S3 (`s3://bucket/key`), its run states beside it
//! (`<key>.reconcile-<run id>.json`).

use super::error::from_sdk;
use crate::store::snapshots::{state_name, Snapshot, SnapshotStore};
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use chrono::DateTime;

/// A snapshot object in S3.
#[derive(Debug, Clone)]
pub struct S3Snapshot {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl S3Snapshot {
    /// The snapshot at `url` (`s3://bucket/key`), read with `client`.
    pub fn new(client: aws_sdk_s3::Client, url: &str) -> Result<Self, StoreError> {
        let (bucket, key) = parse_url(url)?;
        Ok(Self { client, bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// Reads one object whole; `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<aws_sdk_s3::primitives::DateTime>)>, StoreError> {
        let location = format!("s3://{}/{key}", self.bucket);
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => return Ok(None),
            Err(e) => return Err(from_sdk(&format!("reading {location}"), e)),
        };
        let modified = out.last_modified;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading {location}: {e}").into()))?
            .into_bytes();
        Ok(Some((bytes.to_vec(), modified)))
    }
}

/// `s3://bucket/key` split into bucket and key.
pub fn parse_url(url: &str) -> Result<(&str, &str), StoreError> {
    url.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty() && !key.ends_with('/'))
        .ok_or_else(|| StoreError::Backend(format!("{url:?} is not an S3 object URL: expected s3://bucket/key").into()))
}

#[async_trait]
impl SnapshotStore for S3Snapshot {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn read(&self) -> Result<Snapshot, StoreError> {
        let (bytes, modified) = self.get(&self.key).await?.ok_or_else(|| {
            StoreError::NotFound(format!("reading the snapshot {}: no such object", self.location()).into())
        })?;
        let modified_at = modified.and_then(|m| DateTime::from_timestamp(m.secs(), m.subsec_nanos()));
        Ok(Snapshot { bytes, modified_at })
    }

    async fn read_state(&self, run_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&state_name(&self.key, run_id)).await?.map(|(bytes, _)| bytes))
    }

    async fn write_state(&self, run_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = state_name(&self.key, run_id);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk(&format!("writing s3://{}/{key}", self.bucket), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_url_names_a_bucket_and_a_key() {
        assert_eq!(parse_url("s3://exports/shop/products.ndjson").unwrap(), ("exports", "shop/products.ndjson"));
        for bad in ["exports/x", "s3://exports", "s3:///x", "s3://exports/", "s3://exports/dir/"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
