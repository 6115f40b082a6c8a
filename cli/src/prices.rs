//! AWS list prices the cost benchmark turns measured usage into dollars with: on-demand, us-east-1, as published
//! in 2025 (DynamoDB's on-demand prices since their 1 November 2024 reduction). Stated here once, so a report names
//! exactly what it assumed; they are list prices, not a bill (no free tier, no discounts, no Lambda compute).

use serde::Serialize;

/// The prices (US dollars).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    /// DynamoDB on-demand, per million write request units.
    pub dynamodb_per_million_wru: f64,
    /// DynamoDB on-demand, per million read request units.
    pub dynamodb_per_million_rru: f64,
    /// DynamoDB Standard table class storage, per GB-month.
    pub dynamodb_per_gb_month: f64,
    /// S3 Standard PUT, COPY, POST, LIST, per thousand requests.
    pub s3_per_thousand_puts: f64,
    /// S3 Standard GET and other reads, per thousand requests.
    pub s3_per_thousand_gets: f64,
    /// S3 Standard storage, per GB-month (first 50 TB).
    pub s3_standard_per_gb_month: f64,
    /// S3 Glacier Flexible Retrieval storage, per GB-month.
    pub s3_glacier_per_gb_month: f64,
    /// Lifecycle transitions into Glacier Flexible Retrieval, per thousand objects.
    pub s3_per_thousand_glacier_transitions: f64,
    /// S3 Lifecycle moves no object smaller than this to another storage class (its default since September 2024).
    pub s3_min_transition_bytes: u64,
    /// SQS standard queue, per million requests (each 64 KB chunk of a payload is one request).
    pub sqs_per_million_requests: f64,
}

/// us-east-1 list prices, 2025.
pub const US_EAST_1_2025: Prices = Prices {
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    dynamodb_per_gb_month: 0.25,
    s3_per_thousand_puts: 0.005,
    s3_per_thousand_gets: 0.0004,
    s3_standard_per_gb_month: 0.023,
    s3_glacier_per_gb_month: 0.0036,
    s3_per_thousand_glacier_transitions: 0.03,
    s3_min_transition_bytes: 128 * 1024,
    sqs_per_million_requests: 0.40,
};

/// Days in an average month, for GB-months.
const DAYS_PER_MONTH: f64 = 30.4375;
/// Bytes in a GB as AWS bills storage (GiB).
const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How long stored data is kept: the retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Retention {
    /// Event records expire (DynamoDB TTL) after this many days (`SYNCTRAIL_METADATA_RETENTION_DAYS`).
    pub records_days: f64,
    /// Payloads move to Glacier after this many days (when large enough for lifecycle to move them).
    pub archive_after_days: f64,
    /// Payloads expire after this many days.
    pub expire_after_days: f64,
}

impl Prices {
    /// Dollars for storing `bytes` in DynamoDB for `days`.
    pub fn dynamodb_storage(&self, bytes: f64, days: f64) -> f64 {
        bytes / GB * self.dynamodb_per_gb_month * days / DAYS_PER_MONTH
    }

    /// Dollars for keeping `objects` payload objects of `bytes` in all in S3 over their whole retention: in
    /// Standard until archived, then in Glacier (plus one transition each) — or in Standard throughout when the
    /// objects are too small for lifecycle to move them.
    pub fn s3_storage(&self, objects: f64, bytes: f64, retention: &Retention) -> f64 {
        let standard = |days: f64| bytes / GB * self.s3_standard_per_gb_month * days / DAYS_PER_MONTH;
        if objects <= 0.0 {
            return 0.0;
        }
        if bytes / objects < self.s3_min_transition_bytes as f64 {
            return standard(retention.expire_after_days);
        }
        let glacier_days = retention.expire_after_days - retention.archive_after_days;
        standard(retention.archive_after_days)
            + bytes / GB * self.s3_glacier_per_gb_month * glacier_days / DAYS_PER_MONTH
            + objects / 1000.0 * self.s3_per_thousand_glacier_transitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_stay_in_standard_and_large_ones_move_to_glacier() {
        let p = US_EAST_1_2025;
        let r = Retention { records_days: 430.0, archive_after_days: 30.0, expire_after_days: 400.0 };
        let small = p.s3_storage(1.0, 700.0, &r);
        assert!((small - 700.0 / GB * 0.023 * 400.0 / DAYS_PER_MONTH).abs() < 1e-15, "{small}");
        let big = 1024.0 * 1024.0;
        let large = p.s3_storage(1.0, big, &r);
        let expected = big / GB * (0.023 * 30.0 + 0.0036 * 370.0) / DAYS_PER_MONTH + 0.03 / 1000.0;
        assert!((large - expected).abs() < 1e-12, "{large} vs {expected}");
        assert!((p.dynamodb_storage(GB, DAYS_PER_MONTH) - 0.25).abs() < 1e-12);
    }
}
