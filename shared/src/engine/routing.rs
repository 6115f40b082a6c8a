//! Where re-drives go: the queue of the processor recorded on the event (`SYNCTRAIL_REDRIVE_QUEUES`,
//! [`crate::Settings::redrive_queue_for`]), else the one queue.

use super::Engine;
use crate::store::{OutgoingMessage, StoreError};

impl Engine {
    /// Sends `messages` to `queue` (another processor's queue), or to the one queue when `queue` is `None`; returns
    /// their ids.
    pub(super) async fn send_routed(
        &self,
        queue: Option<&str>,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, StoreError> {
        match queue {
            Some(url) => self.ports.queue.send_to(url, messages).await,
            None => self.ports.queue.send(messages).await,
        }
    }
}

/// `items` grouped by the queue `queue_of` names (`None`: the one queue), groups in the order first seen.
pub(super) fn by_queue<T>(
    items: impl IntoIterator<Item = T>,
    queue_of: impl Fn(&T) -> Option<&str>,
) -> Vec<(Option<String>, Vec<T>)> {
    let mut groups: Vec<(Option<String>, Vec<T>)> = Vec::new();
    for item in items {
        let queue = queue_of(&item);
        match groups.iter().position(|(q, _)| q.as_deref() == queue) {
            Some(at) => groups[at].1.push(item),
            None => groups.push((queue.map(str::to_owned), vec![item])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::by_queue;

    #[test]
    fn items_are_grouped_by_queue_in_the_order_first_seen() {
        let items = [("a", Some("q2")), ("b", None), ("c", Some("q2")), ("d", Some("q1")), ("e", None)];
        let groups = by_queue(items, |(_, q)| *q);
        let names: Vec<(Option<&str>, Vec<&str>)> =
            groups.iter().map(|(q, g)| (q.as_deref(), g.iter().map(|(n, _)| *n).collect())).collect();
        assert_eq!(names, vec![(Some("q2"), vec!["a", "c"]), (None, vec!["b", "e"]), (Some("q1"), vec!["d"])]);
    }
}
