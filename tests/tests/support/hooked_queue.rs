//! A real queue with some of its calls changed: the tests' broken or instrumented queues, each written as the few
//! calls it changes ([`QueueHooks`]) while every other call goes to the queue underneath.

use async_trait::async_trait;
use chrono::Duration;
use std::sync::Arc;
use synctrail::store::{OutgoingMessage, Queue, QueueDepth, QueueMessage, StoreError};

/// The calls a test may change; each is given the queue underneath and, left as it is, passes the call on to it.
#[async_trait]
pub trait QueueHooks: Send + Sync {
    async fn send(&self, inner: &dyn Queue, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        inner.send(messages).await
    }

    async fn send_to(
        &self,
        inner: &dyn Queue,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, StoreError> {
        inner.send_to(queue, messages).await
    }

    async fn receive_waiting(
        &self,
        inner: &dyn Queue,
        max: usize,
        visibility: Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        inner.receive_waiting(max, visibility, wait).await
    }

    async fn delete(&self, inner: &dyn Queue, handles: &[String]) -> Result<(), StoreError> {
        inner.delete(handles).await
    }

    async fn receive_dead_letters(
        &self,
        inner: &dyn Queue,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        inner.receive_dead_letters(max, visibility).await
    }

    async fn depth(&self, inner: &dyn Queue) -> Result<QueueDepth, StoreError> {
        inner.depth().await
    }
}

/// `inner` with the calls `hooks` changes.
pub struct HookedQueue<H> {
    pub inner: Arc<dyn Queue>,
    pub hooks: H,
}

#[async_trait]
impl<H: QueueHooks> Queue for HookedQueue<H> {
    async fn send(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        self.hooks.send(self.inner.as_ref(), messages).await
    }
    async fn send_to(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        self.hooks.send_to(self.inner.as_ref(), queue, messages).await
    }
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        self.inner.receive(max, visibility).await
    }
    async fn receive_waiting(
        &self,
        max: usize,
        visibility: Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        self.hooks.receive_waiting(self.inner.as_ref(), max, visibility, wait).await
    }
    fn end_waits(&self) {
        self.inner.end_waits();
    }
    async fn delete(&self, handles: &[String]) -> Result<(), StoreError> {
        self.hooks.delete(self.inner.as_ref(), handles).await
    }
    async fn change_visibility(&self, handle: &str, timeout: Duration) -> Result<(), StoreError> {
        self.inner.change_visibility(handle, timeout).await
    }
    async fn dead_letter(&self, handle: &str, body: &str, trace: Option<&str>) -> Result<(), StoreError> {
        self.inner.dead_letter(handle, body, trace).await
    }
    async fn receive_dead_letters(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        self.hooks.receive_dead_letters(self.inner.as_ref(), max, visibility).await
    }
    async fn release_dead_letters(&self, handles: &[String]) -> Result<(), StoreError> {
        self.inner.release_dead_letters(handles).await
    }
    async fn delete_dead_letters(&self, handles: &[String]) -> Result<(), StoreError> {
        self.inner.delete_dead_letters(handles).await
    }
    async fn return_dead_letters(&self, messages: &[QueueMessage]) -> Result<(), StoreError> {
        self.inner.return_dead_letters(messages).await
    }
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.hooks.depth(self.inner.as_ref()).await
    }
    fn max_receives(&self) -> u32 {
        self.inner.max_receives()
    }
}
