//! Creating the AWS resources, idempotently: for development endpoints (moto, LocalStack) and tests. Production
//! deployments create them from the SAM template instead.

use super::dynamodb::{BY_ENTITY, BY_LEASE, BY_STATUS, BY_WAITING_FOR, INDEX_ATTRIBUTES};
use super::error::{build_error, from_sdk};
use super::{apply_lifecycle, AwsConfig, Clients};
use crate::store::StoreError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::operation::create_bucket::CreateBucketError;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration};
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupConfig {
    /// The DynamoDB table.
    pub table: String,
    /// The S3 bucket.
    pub bucket: String,
    /// The ingest queue's name.
    pub queue: String,
    /// The dead-letter queue's name.
    pub dlq: String,
    /// Receives after which SQS moves a message to the DLQ.
    pub max_receive_count: u32,
    /// The queue's default visibility timeout, in seconds.
    pub visibility_timeout_seconds: u32,
    /// Payloads move to GLACIER after this many days.
    pub archive_after_days: i32,
    /// Payloads expire after this many days.
    pub expire_after_days: i32,
}

impl SetupConfig {
    /// `<prefix>-events`, `<prefix>-payloads`, `<prefix>-ingest`, `<prefix>-ingest-dlq`, with defaults: 5 receives,
    /// 180 s visibility, archive after 30 days, expire after 400.
    pub fn named(prefix: &str) -> Self {
        Self {
            table: format!("{prefix}-events"),
            bucket: format!("{prefix}-payloads"),
            queue: format!("{prefix}-ingest"),
            dlq: format!("{prefix}-ingest-dlq"),
            max_receive_count: 5,
            visibility_timeout_seconds: 180,
            archive_after_days: 30,
            expire_after_days: 400,
        }
    }
}

/// What [`create_all`] created (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The table's name.
    pub table: String,
    /// The bucket's name.
    pub bucket: String,
    /// The ingest queue's URL.
    pub queue_url: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
}

impl Created {
    /// The [`AwsConfig`] that connects to these resources.
    pub fn config(&self, endpoint_url: Option<String>, region: Option<String>) -> AwsConfig {
        AwsConfig {
            table: self.table.clone(),
            bucket: self.bucket.clone(),
            queue: self.queue_url.clone(),
            dlq: self.dlq_url.clone(),
            endpoint_url,
            region,
            serialize_dynamodb: false,
            max_receives: None,
        }
    }
}

/// Creates the table (four indexes, on-demand, TTL on `ttl`), the bucket (public access blocked, payload
/// lifecycle) and the queue with its DLQ and redrive policy. Whatever exists already is kept (and its
/// settings brought in line where the API allows).
pub async fn create_all(clients: &Clients, config: &SetupConfig) -> Result<Created, StoreError> {
    create_table(&clients.dynamodb, &config.table).await?;
    create_bucket(&clients.s3, &config.bucket).await?;
    apply_lifecycle(&clients.s3, &config.bucket, config.archive_after_days, config.expire_after_days).await?;
    let (queue_url, dlq_url) = create_queues(&clients.sqs, config).await?;
    Ok(Created { table: config.table.clone(), bucket: config.bucket.clone(), queue_url, dlq_url })
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| build_error("table", e))
}

fn key_schema(partition: &str, sort: &str) -> Result<Vec<KeySchemaElement>, StoreError> {
    let element = |name: &str, kind| {
        KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(|e| build_error("table", e))
    };
    Ok(vec![element(partition, KeyType::Hash)?, element(sort, KeyType::Range)?])
}

/// An index projecting its keys and `include` (none: KEYS_ONLY).
fn index(name: &str, partition: &str, sort: &str, include: &[&str]) -> Result<GlobalSecondaryIndex, StoreError> {
    let projection = if include.is_empty() {
        Projection::builder().projection_type(ProjectionType::KeysOnly).build()
    } else {
        Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(include.iter().map(|a| (*a).to_owned()).collect()))
            .build()
    };
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(key_schema(partition, sort)?))
        .projection(projection)
        .build()
        .map_err(|e| build_error("table index", e))
}

async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
    use ScalarAttributeType::{N, S};
    let what = format!("creating table {table}");
    let attributes = [
        ("pk", S),
        ("sk", S),
        ("gsi1pk", S),
        ("gsi1sk", S),
        ("gsi2pk", S),
        ("gsi2sk", S),
        ("gsi3pk", S),
        ("gsi4pk", S),
        ("lease_until", N),
    ]
    .into_iter()
    .map(|(name, kind)| attribute(name, kind))
    .collect::<Result<Vec<_>, _>>()?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema("pk", "sk")?))
        .global_secondary_indexes(index(BY_STATUS, "gsi1pk", "gsi1sk", &INDEX_ATTRIBUTES)?)
        .global_secondary_indexes(index(BY_ENTITY, "gsi2pk", "gsi2sk", &INDEX_ATTRIBUTES)?)
        .global_secondary_indexes(index(BY_LEASE, "gsi3pk", "lease_until", &[])?)
        .global_secondary_indexes(index(BY_WAITING_FOR, "gsi4pk", "gsi2sk", &INDEX_ATTRIBUTES)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if matches!(e.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {}
        Err(e) => return Err(from_sdk(&what, e)),
    }
    // Wait (bounded) until the table is ACTIVE: at once on moto, seconds on AWS.
    for _ in 0..120 {
        let described = client.describe_table().table_name(table).send().await.map_err(|e| from_sdk(&what, e))?;
        if described.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return enable_ttl(client, table).await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(StoreError::Unavailable(format!("{what}: the table did not become ACTIVE within 2 minutes").into()))
}

async fn enable_ttl(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
    let what = format!("enabling TTL on table {table}");
    let described = client.describe_time_to_live().table_name(table).send().await.map_err(|e| from_sdk(&what, e))?;
    let status = described.time_to_live_description.and_then(|d| d.time_to_live_status);
    if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("ttl")
        .build()
        .map_err(|e| build_error(&what, e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| from_sdk(&what, e))?;
    Ok(())
}

async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), StoreError> {
    let what = format!("creating bucket {bucket}");
    let region = client.config().region().map(|r| r.as_ref().to_owned()).unwrap_or_else(|| "us-east-1".into());
    let mut request = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        let constraint = BucketLocationConstraint::from(region.as_str());
        request = request
            .create_bucket_configuration(CreateBucketConfiguration::builder().location_constraint(constraint).build());
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) if matches!(e.as_service_error(), Some(CreateBucketError::BucketAlreadyOwnedByYou(_))) => {}
        Err(e) => return Err(from_sdk(&what, e)),
    }
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(block)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("blocking public access to bucket {bucket}"), e))?;
    Ok(())
}

/// Creates a queue with `attributes`, or sets them on the queue of that name; returns its URL.
async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, StoreError> {
    let what = format!("creating queue {name}");
    let created = client.create_queue().queue_name(name).set_attributes(Some(attributes.clone())).send().await;
    match created {
        Ok(out) => out.queue_url.ok_or_else(|| StoreError::Backend(format!("{what}: SQS returned no URL").into())),
        Err(e) if matches!(e.as_service_error(), Some(CreateQueueError::QueueNameExists(_))) => {
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| from_sdk(&what, e))?
                .queue_url
                .ok_or_else(|| StoreError::Backend(format!("{what}: SQS returned no URL").into()))?;
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| from_sdk(&what, e))?;
            Ok(url)
        }
        Err(e) => Err(from_sdk(&what, e)),
    }
}

async fn create_queues(client: &aws_sdk_sqs::Client, config: &SetupConfig) -> Result<(String, String), StoreError> {
    // 14 days, the most SQS keeps a message: a dead letter's retention counts from its first enqueue.
    let retention = (QueueAttributeName::MessageRetentionPeriod, "1209600".to_owned());
    // 1 MiB, the largest: an envelope holds a payload of up to 256 KiB plus its fields (infra/template.yaml).
    let size = (QueueAttributeName::MaximumMessageSize, "1048576".to_owned());
    let dlq_url = create_queue(client, &config.dlq, HashMap::from([retention.clone(), size.clone()])).await?;
    let out = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("reading the ARN of {dlq_url}"), e))?;
    let dlq_arn = out
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| StoreError::Backend(format!("SQS returned no ARN for {dlq_url}").into()))?;
    let policy = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": config.max_receive_count });
    let attributes = HashMap::from([
        retention,
        size,
        (QueueAttributeName::RedrivePolicy, policy.to_string()),
        (QueueAttributeName::VisibilityTimeout, config.visibility_timeout_seconds.to_string()),
    ]);
    let queue_url = create_queue(client, &config.queue, attributes).await?;
    Ok((queue_url, dlq_url))
}
