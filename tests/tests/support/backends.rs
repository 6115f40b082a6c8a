//! A backend of either kind for the tests of reconcile and verify: the embedded one in a temporary home, or fresh
//! AWS resources on the moto server of `scripts/with-moto.sh` (the mirror in a table of its own, DynamoDB
//! serialized, as in `aws_pipeline`), the engine and the processor over it, on the system clock; and a way to plant
//! divergences in the mirror behind synctrail's back (raw SQL, raw DynamoDB requests).

use super::{settings, temp_home, Env};
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{Duration, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use synctrail::compose::compose;
use synctrail::destination::MirrorView;
use synctrail::engine::{Disposition, Engine};
use synctrail::model::{EntityKey, EventId, EventRecord};
use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
use synctrail::store::aws::Clients;
use synctrail::store::OutgoingMessage;
use synctrail::Settings;
use synctrail_cli::backend::AnyBackend;
use synctrail_processor::{sqs_event, InvocationContext, Processor, RecordResult};

/// A backend, the engine over its ports and the processor over the engine.
pub struct BackendRig {
    home: Option<tempfile::TempDir>,
    /// The backend.
    pub backend: AnyBackend,
    /// The engine (the tests' settings: `inventory_adjustment` is `in_order`).
    pub engine: Arc<Engine>,
    processor: Processor,
}

/// One mirror row as stored, to put back later.
pub enum RawRow {
    /// The embedded mirror's columns, in table order.
    Embedded(Vec<rusqlite::types::Value>),
    /// The DynamoDB item.
    Aws(HashMap<String, AttributeValue>),
}

impl BackendRig {
    /// On the embedded backend (`aws` = `None`) or on fresh AWS resources named after `aws`.
    pub async fn new(aws: Option<&str>) -> Self {
        Self::with_settings(aws, settings()).await
    }

    /// With `settings` for the engine.
    pub async fn with_settings(aws: Option<&str>, settings: Settings) -> Self {
        let (home, backend) = open_backend(aws).await;
        let engine = Arc::new(Engine::new(backend.ports.clone(), settings));
        let processor = Processor::new(Arc::clone(&engine), Duration::seconds(1));
        Self { home, backend, engine, processor }
    }

    /// The embedded backend's home, when it is one.
    pub fn home(&self) -> Option<&std::path::Path> {
        self.home.as_ref().map(tempfile::TempDir::path)
    }

    /// Sends envelopes to the ingest queue.
    pub async fn send(&self, envelopes: &[Env]) {
        let messages = envelopes.iter().map(|e| OutgoingMessage::new(e.body())).collect();
        self.engine.ports().queue.send(messages).await.expect("send");
    }

    /// Sends envelopes and processes the queue until it is empty.
    pub async fn apply(&self, envelopes: &[Env]) {
        self.send(envelopes).await;
        self.drain().await;
    }

    /// Plays the event source until nothing is visible (at most 50 batches).
    pub async fn drain(&self) {
        drain(&self.engine, &self.processor, 50).await;
    }

    /// The event's record, with its whole history.
    pub async fn record(&self, id: &EventId) -> EventRecord {
        whole_record(&self.engine, id).await
    }

    /// The reference mirror (the destination).
    pub fn mirror(&self) -> &Arc<dyn MirrorView> {
        self.backend.mirror.as_ref().expect("the mirror is the destination")
    }

    /// The entity's state in the mirror (`None`: no row, or deleted).
    pub async fn state(&self, entity: &EntityKey) -> Option<serde_json::Value> {
        self.mirror().get(entity).await.expect("mirror read").filter(|r| !r.deleted).map(|r| r.state)
    }

    // ---- divergences planted behind synctrail's back ----

    fn sql(&self) -> Option<rusqlite::Connection> {
        let home = self.home()?;
        Some(rusqlite::Connection::open(home.join(synctrail::store::sqlite::DB_FILE)).expect("open synctrail.db"))
    }

    async fn dynamodb(&self) -> (synctrail::store::aws::sdk::dynamodb::Client, String) {
        let parts = self.backend.aws().expect("the AWS backend");
        let clients = Clients::for_config(&parts.config, None, None).await;
        (clients.dynamodb, crate::aws_pipeline::mirror_table(&parts.config))
    }

    fn mirror_key(entity: &EntityKey) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("MIRROR#{entity}"))),
            ("sk".to_owned(), AttributeValue::S("MIRROR".to_owned())),
        ])
    }

    /// Overwrites the entity's state in its mirror row, nothing else (someone edited the table directly).
    pub async fn edit_row(&self, entity: &EntityKey, state: serde_json::Value) {
        if let Some(db) = self.sql() {
            let changed = db
                .execute("UPDATE mirror SET body = ?1 WHERE entity_key = ?2", (state.to_string(), entity.to_string()))
                .expect("edit the row");
            assert_eq!(changed, 1, "{entity} has a row");
            return;
        }
        // The DynamoDB mirror keeps in_order totals in `total#<field>` numbers laid over the body: set those too.
        let RawRow::Aws(item) = self.take_row(entity).await else { unreachable!("the AWS backend") };
        let (client, table) = self.dynamodb().await;
        let mut update = client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::mirror_key(entity)))
            .expression_attribute_values(":b", AttributeValue::S(state.to_string()))
            .condition_expression("attribute_exists(pk)");
        let mut sets = vec!["body = :b".to_owned()];
        let fields = state.as_object().into_iter().flatten();
        for (i, (field, value)) in fields.filter(|(f, _)| item.contains_key(&format!("total#{f}"))).enumerate() {
            sets.push(format!("#t{i} = :t{i}"));
            update = update
                .expression_attribute_names(format!("#t{i}"), format!("total#{field}"))
                .expression_attribute_values(format!(":t{i}"), AttributeValue::N(value.to_string()));
        }
        update.update_expression(format!("SET {}", sets.join(", "))).send().await.expect("edit the row");
    }

    /// Deletes the entity's mirror row (its effects stay).
    pub async fn delete_row(&self, entity: &EntityKey) {
        if let Some(db) = self.sql() {
            db.execute("DELETE FROM mirror WHERE entity_key = ?1", [entity.to_string()]).expect("delete the row");
            return;
        }
        let (client, table) = self.dynamodb().await;
        client.delete_item().table_name(table).set_key(Some(Self::mirror_key(entity))).send().await.expect("delete");
    }

    /// The entity's mirror row as stored.
    pub async fn take_row(&self, entity: &EntityKey) -> RawRow {
        if let Some(db) = self.sql() {
            let row = db
                .query_row("SELECT * FROM mirror WHERE entity_key = ?1", [entity.to_string()], |row| {
                    (0..10).map(|i| row.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>()
                })
                .expect("read the row");
            return RawRow::Embedded(row);
        }
        let (client, table) = self.dynamodb().await;
        let out = client
            .get_item()
            .table_name(table)
            .set_key(Some(Self::mirror_key(entity)))
            .consistent_read(true)
            .send()
            .await
            .expect("read the row");
        RawRow::Aws(out.item.expect("the row exists"))
    }

    /// Puts a row taken earlier back as it was (whatever was written since is lost).
    pub async fn put_row(&self, row: RawRow) {
        match row {
            RawRow::Embedded(values) => {
                let db = self.sql().expect("the embedded backend");
                db.execute(
                    "INSERT OR REPLACE INTO mirror VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    rusqlite::params_from_iter(values),
                )
                .expect("put the row back");
            }
            RawRow::Aws(item) => {
                let (client, table) = self.dynamodb().await;
                client.put_item().table_name(table).set_item(Some(item)).send().await.expect("put the row back");
            }
        }
    }

    /// Removes the record of `event`'s effect at the mirror (as if its write never happened).
    pub async fn delete_effect(&self, event: &EventId) {
        if let Some(db) = self.sql() {
            db.execute("DELETE FROM mirror_effects WHERE event_id = ?1", [event.to_string()]).expect("delete");
            return;
        }
        let (client, table) = self.dynamodb().await;
        let key = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("EFFECT#{event}"))),
            ("sk".to_owned(), AttributeValue::S("EFFECT".to_owned())),
        ]);
        client.delete_item().table_name(table).set_key(Some(key)).send().await.expect("delete the effect");
    }
}

/// The embedded backend in a fresh temporary home (`aws` = `None`, the home is returned to keep it alive), or
/// fresh AWS resources named after `aws` on the moto server.
pub async fn open_backend(aws: Option<&str>) -> (Option<tempfile::TempDir>, AnyBackend) {
    match aws {
        Some(name) => (None, crate::aws_pipeline::backend(name).await),
        None => {
            let home = temp_home();
            let config = synctrail::config::Config::embedded(home.path());
            (Some(home), compose(&config, Arc::new(synctrail::SystemClock), None).await.expect("open"))
        }
    }
}

/// The record of `id` as `engine`'s store holds it, with its whole history (panics when absent).
pub async fn whole_record(engine: &Engine, id: &EventId) -> EventRecord {
    let store = &engine.ports().store;
    store.get_event_with_history(id).await.expect("get").unwrap_or_else(|| panic!("{id} not recorded"))
}

/// Plays the event source until nothing is visible (at most `rounds` batches): receive, let `processor` handle
/// the batch, delete what succeeded and was not dead-lettered.
pub async fn drain(engine: &Engine, processor: &Processor, rounds: usize) {
    let queue = &engine.ports().queue;
    for n in 0..rounds {
        let messages = queue.receive(10, Duration::seconds(30)).await.expect("receive");
        if messages.is_empty() {
            return;
        }
        let event: SqsEvent = sqs_event(&messages);
        let context = InvocationContext {
            request_id: format!("req-{n}"),
            deadline: Utc::now() + Duration::seconds(20),
            function: Some("synctrail-processor:1".into()),
            trace_id: None,
        };
        let batch = processor.process_batch(event, &context).await;
        let failed: Vec<&str> = batch.response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        let done: Vec<String> = messages
            .iter()
            .zip(&batch.records)
            .filter(|(m, r)| {
                let dead = matches!(r, RecordResult::Processed(o) if o.disposition == Disposition::DeadLetter);
                !dead && !failed.contains(&m.message_id.as_str())
            })
            .map(|(m, _)| m.receipt_handle.clone())
            .collect();
        queue.delete(&done).await.expect("delete");
    }
    panic!("the queue did not drain in {rounds} batches");
}
