//! [`S3Payloads`]: payloads as zstd objects named by date and SHA-256 — one per payload, or one per batch holding
//! each payload as its own zstd frame — written create-only, read whole or by byte range, checked on read.

use super::error::{build_error, classify, from_sdk, Meaning};
use crate::model::{ByteRange, PayloadRef};
use crate::store::payloads::{compress_payload, Compression, FramedBatch};
use crate::store::{PayloadStore, StoreError};
use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    Transition, TransitionStorageClass,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Where every payload key starts.
const PREFIX: &str = "payloads/";

/// The S3 [`PayloadStore`]: `payloads/YYYY/MM/DD/<sha256>.zst` (date of `received_at`, UTC), metadata `sha256`,
/// for one payload; `payloads/YYYY/MM/DD/batch-<sha256 of the object>.zst`, metadata `bodies`, for a batch
/// ([`PayloadStore::put_batch`]): the bodies' zstd frames one after another, each reference naming its frame's
/// byte range, read back with a ranged `GetObject` (one PUT per batch instead of one per body; objects the
/// lifecycle moves once a batch reaches 128 KB, see [`apply_lifecycle`]).
///
/// Objects are written with `If-None-Match: *`: a payload is never overwritten, and writing the same bytes again
/// (a 412) is a success. A failure between this write and the metadata commit leaves an orphan object that the
/// retry writes again (same key for one payload, a new batch object when the batch differs) and the lifecycle
/// rule eventually expires.
#[derive(Debug, Clone)]
pub struct S3Payloads {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Payloads {
    /// The payload store in `bucket` (which must exist; see [`super::setup::create_all`]).
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        Self { client, bucket: bucket.to_owned() }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key of the payload with SHA-256 `sha256` (hex) received at `received_at`.
    pub fn key_for(sha256: &str, received_at: DateTime<Utc>) -> String {
        format!("{PREFIX}{}/{sha256}.zst", received_at.format("%Y/%m/%d"))
    }

    /// The key of the batch object with SHA-256 `sha256` (hex, of the stored object) received at `received_at`.
    pub fn batch_key_for(sha256: &str, received_at: DateTime<Utc>) -> String {
        format!("{PREFIX}{}/batch-{sha256}.zst", received_at.format("%Y/%m/%d"))
    }

    /// Writes `object` under `key` unless an object is there already (create-only: under a content-addressed key
    /// an existing object holds these very bytes).
    async fn put_new(&self, key: &str, object: Vec<u8>, metadata: &[(&str, String)]) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/zstd")
            .body(ByteStream::from(object));
        for (name, value) in metadata {
            put = put.metadata(*name, value);
        }
        match put.send().await {
            Ok(_) => Ok(()),
            // 412: an object already sits under this content-addressed key, so it holds these very bytes.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(()),
            Err(e) => Err(from_sdk(&format!("writing payload s3://{}/{key}", self.bucket), e)),
        }
    }

    /// Where a payload lies, for messages: `s3://bucket/key`, plus its byte range inside a batch object.
    fn location(&self, key: &str, range: Option<ByteRange>) -> String {
        match range {
            Some(r) => format!("s3://{}/{key} bytes {}+{}", self.bucket, r.offset, r.length),
            None => format!("s3://{}/{key}", self.bucket),
        }
    }

    /// The stored bytes of `key`, or of `range` inside it.
    async fn fetch(&self, key: &str, range: Option<ByteRange>) -> Result<Vec<u8>, StoreError> {
        let location = self.location(key, range);
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = range {
            let last =
                r.last().ok_or_else(|| StoreError::Corrupt(format!("payload {location}: empty byte range").into()))?;
            request = request.range(format!("bytes={}-{last}", r.offset));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code().map(str::to_owned));
                let status = e.raw_response().map(|r| r.status().as_u16());
                return Err(match e.as_service_error() {
                    Some(GetObjectError::NoSuchKey(_)) => StoreError::NotFound(format!("payload {location}").into()),
                    Some(GetObjectError::InvalidObjectState(state)) => StoreError::Archived(
                        format!(
                            "payload {location} is in storage class {}; restore it first (S3 RestoreObject, e.g. \
                         `aws s3api restore-object --bucket {} --key {key} --restore-request Days=7`)",
                            state.storage_class().map_or("GLACIER", |c| c.as_str()),
                            self.bucket
                        )
                        .into(),
                    ),
                    _ if classify(code.as_deref(), None) == Meaning::NotFound => {
                        StoreError::NotFound(format!("payload {location}").into())
                    }
                    // 416: the range lies outside the object, which is shorter than the record says.
                    _ if status == Some(416) => {
                        StoreError::Corrupt(format!("payload {location}: the range lies outside the object").into())
                    }
                    _ => from_sdk(&format!("reading payload {location}"), e),
                });
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading payload {location}: {e}").into()))?
            .into_bytes();
        if let Some(r) = range.filter(|r| bytes.len() as u64 != r.length) {
            return Err(StoreError::Corrupt(
                format!("payload {location}: {} bytes came back, the range holds {}", bytes.len(), r.length).into(),
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Puts this store's lifecycle rule on its bucket (see [`apply_lifecycle`]).
    pub async fn apply_lifecycle(&self, archive_after_days: i32, expire_after_days: i32) -> Result<(), StoreError> {
        apply_lifecycle(&self.client, &self.bucket, archive_after_days, expire_after_days).await
    }
}

/// Refuses keys that are not payload keys.
fn check_key(key: &str) -> Result<(), StoreError> {
    if !key.starts_with(PREFIX) || key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(StoreError::Backend(format!("payload key {key:?} is not under {PREFIX}").into()));
    }
    Ok(())
}

#[async_trait]
impl PayloadStore for S3Payloads {
    async fn put(&self, bytes: &[u8], received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let key = Self::key_for(&sha, received_at);
        let compressed = compress_payload(bytes, Compression::Small, &key)?;
        self.put_new(&key, compressed, &[("sha256", sha.clone()), ("size", bytes.len().to_string())]).await?;
        Ok(PayloadRef { key, sha256: sha, size: bytes.len() as u64, range: None })
    }

    async fn put_batch(&self, bodies: &[&[u8]], received_at: DateTime<Utc>) -> Result<Vec<PayloadRef>, StoreError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let batch = FramedBatch::new(bodies, Compression::Small)?;
        let key = Self::batch_key_for(&batch.sha256(), received_at);
        let references = batch.references(&key);
        self.put_new(&key, batch.object, &[("bodies", bodies.len().to_string())]).await?;
        Ok(references)
    }

    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
        let key = &payload.key;
        check_key(key)?;
        let compressed = self.fetch(key, payload.range).await?;
        let location = self.location(key, payload.range);
        let bytes = zstd::stream::decode_all(compressed.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("payload {location}: not valid zstd: {e}").into()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if !sha.eq_ignore_ascii_case(&payload.sha256) {
            return Err(StoreError::Corrupt(
                format!("payload {location}: SHA-256 is {sha}, expected {}", payload.sha256).into(),
            ));
        }
        Ok(bytes)
    }
}

/// Puts the payload lifecycle on `bucket`: objects under `payloads/` move to GLACIER after `archive_after_days`
/// and expire after `expire_after_days`. Replaces the bucket's whole lifecycle configuration.
///
/// S3 transitions only objects of at least 128 KB unless told otherwise (the bucket default
/// `all_storage_classes_128K`): batch objects move once a batch holds that much, smaller objects stay in Standard
/// (where they cost less than Glacier's 40 KB per-object overhead would); every object expires.
pub async fn apply_lifecycle(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    archive_after_days: i32,
    expire_after_days: i32,
) -> Result<(), StoreError> {
    if archive_after_days < 0 || expire_after_days <= archive_after_days {
        return Err(StoreError::Backend(
            format!(
                "payload lifecycle: expiry after {expire_after_days} days must come after archiving after \
             {archive_after_days} days"
            )
            .into(),
        ));
    }
    let what = format!("putting the lifecycle of bucket {bucket}");
    let rule = LifecycleRule::builder()
        .id("synctrail-payloads")
        .filter(LifecycleRuleFilter::builder().prefix(PREFIX).build())
        .status(ExpirationStatus::Enabled)
        .transitions(
            Transition::builder().days(archive_after_days).storage_class(TransitionStorageClass::Glacier).build(),
        )
        .expiration(LifecycleExpiration::builder().days(expire_after_days).build())
        .build()
        .map_err(|e| build_error(&what, e))?;
    let configuration =
        BucketLifecycleConfiguration::builder().rules(rule).build().map_err(|e| build_error(&what, e))?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(configuration)
        .send()
        .await
        .map_err(|e| from_sdk(&what, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_dated_and_content_addressed() {
        let at = DateTime::parse_from_rfc3339("2026-05-01T23:59:59Z").expect("time").with_timezone(&Utc);
        assert_eq!(S3Payloads::key_for("ab12", at), "payloads/2026/05/01/ab12.zst");
        assert_eq!(S3Payloads::batch_key_for("cd34", at), "payloads/2026/05/01/batch-cd34.zst");
        assert!(check_key("payloads/2026/05/01/batch-cd34.zst").is_ok());
        assert!(check_key("payloads/2026/05/01/ab12.zst").is_ok());
        for bad in ["../synctrail.db", "payloads/../x", "other/x", "payloads//x"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
