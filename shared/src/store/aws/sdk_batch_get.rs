//! One strongly consistent `BatchGetItem` through the SDK, for the readers that page and retry it themselves (the
//! store's hydration of index entries, the mirror's read before its client's first request).

use super::error::{build_error, from_sdk};
use super::wire::Item;
use crate::store::StoreError;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::Client;

/// Reads `keys` (at most 100) of `table`: the items found and the keys DynamoDB left unprocessed.
pub(crate) async fn sdk_batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    what: &str,
) -> Result<(Vec<Item>, Vec<Item>), StoreError> {
    let asked = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(true)
        .build()
        .map_err(|e| build_error(what, e))?;
    let out = client.batch_get_item().request_items(table, asked).send().await.map_err(|e| from_sdk(what, e))?;
    let items = out.responses.and_then(|mut r| r.remove(table)).unwrap_or_default();
    let unprocessed = out.unprocessed_keys.and_then(|mut u| u.remove(table)).map(|k| k.keys);
    Ok((items, unprocessed.unwrap_or_default()))
}
