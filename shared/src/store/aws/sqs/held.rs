//! What this adapter remembers of the messages it received: bodies for `dead_letter`, and which receipt
//! handles a later receive made stale.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The most receipt handles remembered; older ones are forgotten first.
const LIMIT: usize = 10_000;

/// A received message, as far as dead-lettering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeldMessage {
    pub(super) message_id: String,
    pub(super) body: String,
    pub(super) trace_header: Option<String>,
    /// Which receive call handed out this handle.
    generation: u64,
}

/// What a receipt handle is, as far as this adapter knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Handle {
    /// Received by this adapter, and its message not received again since.
    Current(HeldMessage),
    /// Received by this adapter, and its message received again since: the handle is out of date.
    Stale,
    /// Not received by this adapter (another process, a Lambda event, or forgotten).
    Unknown,
}

#[derive(Default)]
struct State {
    by_handle: HashMap<String, HeldMessage>,
    latest: HashMap<String, u64>,
    order: VecDeque<String>,
    generation: u64,
}

/// Receipt handles handed out by this adapter.
#[derive(Default)]
pub(super) struct Held {
    state: Mutex<State>,
}

impl Held {
    /// Starts remembering one receive call's messages: `(handle, message_id, body, trace_header)`.
    pub(super) fn remember<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a str, &'a str, &'a str, Option<&'a str>)>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.generation += 1;
        let generation = state.generation;
        for (handle, message_id, body, trace_header) in messages {
            let held = HeldMessage {
                message_id: message_id.to_owned(),
                body: body.to_owned(),
                trace_header: trace_header.map(str::to_owned),
                generation,
            };
            state.latest.insert(message_id.to_owned(), generation);
            state.by_handle.insert(handle.to_owned(), held);
            state.order.push_back(handle.to_owned());
        }
        while state.order.len() > LIMIT {
            if let Some(old) = state.order.pop_front() {
                if let Some(gone) = state.by_handle.remove(&old) {
                    if state.latest.get(&gone.message_id) == Some(&gone.generation) {
                        state.latest.remove(&gone.message_id);
                    }
                }
            }
        }
    }

    /// What `handle` is.
    pub(super) fn look_up(&self, handle: &str) -> Handle {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.by_handle.get(handle) {
            None => Handle::Unknown,
            Some(held) if state.latest.get(&held.message_id).is_some_and(|g| *g > held.generation) => Handle::Stale,
            Some(held) => Handle::Current(held.clone()),
        }
    }

    /// Forgets the message `handle` belongs to, with all its handles (it was deleted or dead-lettered).
    pub(super) fn forget(&self, handle: &str) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(gone) = state.by_handle.remove(handle) {
            state.by_handle.retain(|_, held| held.message_id != gone.message_id);
            state.latest.remove(&gone.message_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_receive_makes_earlier_handles_stale() {
        let held = Held::default();
        held.remember([("h1", "m1", "body", Some("R"))]);
        let Handle::Current(first) = held.look_up("h1") else { panic!("h1 is current") };
        assert_eq!((first.body.as_str(), first.trace_header.as_deref()), ("body", Some("R")));
        held.remember([("h2", "m1", "body", None), ("h3", "m1", "body", None)]);
        assert_eq!(held.look_up("h1"), Handle::Stale);
        assert!(matches!(held.look_up("h2"), Handle::Current(_)), "two copies in one receive are both current");
        assert!(matches!(held.look_up("h3"), Handle::Current(_)));
        assert_eq!(held.look_up("nope"), Handle::Unknown);
        held.forget("h2");
        for handle in ["h1", "h2", "h3"] {
            assert_eq!(held.look_up(handle), Handle::Unknown, "{handle}: the message is gone");
        }
    }
}
