//! The DynamoDB side of a run over [`StoreKind::DynamoDb`](super::StoreKind): the event store on a fresh table of
//! the moto server that `scripts/with-moto.sh` starts, its calls run on a runtime of its own ([`SideRuntime`]). The
//! queue, payloads and mirror stay embedded: the queue runs on the run's manual clock, which SQS could not.

use super::{in_place, SideRuntime};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use synctrail::model::{EntityHead, EntityKey, EventId, EventRecord, Status};
use synctrail::store::aws::setup::{create_all, SetupConfig};
use synctrail::store::aws::{Clients, DynamoStore};
use synctrail::store::{EventQuery, EventStore, HeadPage, PartialCommit, StoreError, Write};

/// A fresh table and the event store over it, on a runtime of its own.
pub(super) struct DynamoSide {
    _runtime: SideRuntime,
    /// The store, its calls run on the side's runtime.
    pub(super) store: Arc<dyn EventStore>,
}

impl DynamoSide {
    /// Creates the run's resources (named after `seed`) on the moto server of `SYNCTRAIL_TEST_AWS_ENDPOINT`.
    pub(super) fn start(seed: u64) -> Self {
        let runtime = SideRuntime::start("the DynamoDB side");
        let endpoint = crate::conformance::aws::endpoint();
        let prefix = format!("sim-{seed}-{:08x}", rand::random::<u32>());
        let created = in_place(runtime.runtime().spawn(async move {
            let clients = Clients::connect(Some(&endpoint), Some("us-east-1")).await;
            let created = create_all(&clients, &SetupConfig::named(&prefix)).await;
            created.map(|created| DynamoStore::new(&clients, &created.table))
        }));
        let store = created.expect("the setup task").expect("create the run's table on the moto server");
        let handle = runtime.runtime().handle().clone();
        Self { _runtime: runtime, store: Arc::new(OnRuntimeStore { handle, inner: Arc::new(store) }) }
    }
}

/// An event store whose calls run on another runtime.
struct OnRuntimeStore {
    handle: tokio::runtime::Handle,
    inner: Arc<dyn EventStore>,
}

impl OnRuntimeStore {
    /// Runs `call` on the inner store, on the side's runtime.
    async fn on<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn EventStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.handle.spawn(call(Arc::clone(&self.inner)));
        task.await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("the DynamoDB call's task failed: {e}").into())))
    }
}

#[async_trait::async_trait]
impl EventStore for OnRuntimeStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.clone();
        self.on(|s| async move { s.get_event(&id).await }).await
    }

    async fn get_event_with_history(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.clone();
        self.on(|s| async move { s.get_event_with_history(&id).await }).await
    }

    async fn get_head(&self, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
        let entity = entity.clone();
        self.on(|s| async move { s.get_head(&entity).await }).await
    }

    fn head_fits(&self, head: &EntityHead) -> bool {
        self.inner.head_fits(head)
    }

    async fn get_event_and_head(
        &self,
        id: &EventId,
        entity: &EntityKey,
    ) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
        let (id, entity) = (id.clone(), entity.clone());
        self.on(|s| async move { s.get_event_and_head(&id, &entity).await }).await
    }

    async fn read_ahead(
        &self,
        wanted: &[(EventId, EntityKey)],
    ) -> Result<Option<Vec<(Option<EventRecord>, Option<EntityHead>)>>, StoreError> {
        let wanted = wanted.to_vec();
        self.on(|s| async move { s.read_ahead(&wanted).await }).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.on(|s| async move { s.commit(writes).await }).await
    }

    async fn commit_each(&self, writes: Vec<Write>) -> Result<(), PartialCommit> {
        let task = self.handle.spawn({
            let inner = Arc::clone(&self.inner);
            async move { inner.commit_each(writes).await }
        });
        task.await.unwrap_or_else(|e| {
            let error = StoreError::Unavailable(format!("the DynamoDB call's task failed: {e}").into());
            Err(PartialCommit { applied: 0, error })
        })
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        let query = query.clone();
        self.on(|s| async move { s.list_events(&query).await }).await
    }

    async fn parked_events(&self, entity: &EntityKey, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let entity = entity.clone();
        self.on(move |s| async move { s.parked_events(&entity, limit).await }).await
    }

    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.on(|s| async move { s.count_by_status().await }).await
    }

    async fn expired_leases(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        self.on(move |s| async move { s.expired_leases(before, limit).await }).await
    }

    async fn count_inflight(&self) -> Result<u64, StoreError> {
        self.on(|s| async move { s.count_inflight().await }).await
    }

    async fn list_heads(&self, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
        let after = after.map(str::to_owned);
        self.on(move |s| async move { s.list_heads(after.as_deref(), limit).await }).await
    }

    async fn heads_to_verify(&self, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        self.on(move |s| async move { s.heads_to_verify(limit).await }).await
    }
}
