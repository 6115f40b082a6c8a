//! The pause before trying again what DynamoDB left undone (keys a `BatchGetItem` left unprocessed: the table is
//! throttled, so asking again at once is refused again) or lost (a compare-and-set race).

use std::time::Duration;

/// Waits a jittered, growing time before round `round` (1-based): up to 10 ms × 2^round, at most about 1.3 s.
pub(crate) async fn before_round(round: u32) {
    let ceiling = 10u64 << round.min(7);
    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % ceiling + 1)).await;
}
