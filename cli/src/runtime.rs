//! The local runtime: plays Lambda's SQS event source over the backend's queue (the embedded one, or a real SQS
//! queue). It receives batches, builds real `SqsEvent` values, calls the same processor handler the Lambda runs,
//! and deletes what succeeded — with `workers` invocations at once, until the queue is quiescent. It needs only
//! the engine's ports, so the whole pipeline runs locally against any backend.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use synctrail::destination::drill::{DrillDestination, DrillPlan};
use synctrail::destination::Destination;
use synctrail::engine::{Disposition, Engine, Invocation, Ports};
use synctrail::model::Status;
use synctrail::store::{Queue, QueueMessage, StoreError, RECEIVE_RECHECK};
use synctrail::Settings;
use synctrail_processor::{sqs_event, InvocationContext, Processor, RecordResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the runtime runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Concurrent invocations.
    pub workers: usize,
    /// Messages per invocation (SQS allows up to 10).
    pub batch_size: usize,
    /// The function timeout: each invocation's deadline is this far from its start.
    pub function_timeout: Duration,
    /// How long a received message stays invisible.
    pub visibility_timeout: Duration,
    /// Records are not started this close to the deadline.
    pub safety_margin: Duration,
    /// Entities of one batch processed side by side (see `Processor::with_concurrency`).
    pub lanes: usize,
    /// Keep polling after the queue is quiescent (until `max_duration`).
    pub follow: bool,
    /// Once the queue drained (`follow`), how often it is swept: [`FOLLOW_SWEEP_INTERVAL`] unless a test says.
    pub sweep_interval: std::time::Duration,
    /// Stop after this long, drained or not.
    pub max_duration: std::time::Duration,
    /// How often `progress` is called and, when no invocation ended since the last time, the queue's depth polled.
    pub poll_interval: std::time::Duration,
    /// The queue must look empty this long before a sweep may declare it drained. Zero for the embedded queue,
    /// whose counts are exact; a few seconds for SQS, whose counts are approximate.
    pub quiet_for: std::time::Duration,
    /// Injected destination faults.
    pub drill: DrillPlan,
    /// Probability that an invocation dies mid-batch (no response, leases left behind).
    pub crash_rate: f64,
    /// Seed of the drill's dice.
    pub seed: u64,
    /// Return only once what the workers' last receives took is handed back (up to [`HAND_BACK_WAIT`]), for a
    /// process that exits right after its run (`synctrail run`): a receive left running when the process exits —
    /// an SQS long poll goes on without its client — takes a message sent meanwhile and hides it for the whole
    /// visibility timeout. Off, the run returns at once and the hand-back goes on in the background, which is
    /// enough for a process that goes on (the benchmarks, whose measured time it would lengthen).
    pub hand_back_before_returning: bool,
    /// Once set, the run stops as when `max_duration` is over (`synctrail run` sets it on Ctrl-C or SIGTERM:
    /// [`crate::interrupt::stop_on_interrupt`]).
    pub stop_requested: Option<&'static AtomicBool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            batch_size: 10,
            function_timeout: Duration::seconds(2),
            visibility_timeout: Duration::seconds(3),
            safety_margin: Duration::milliseconds(200),
            lanes: 1,
            follow: false,
            sweep_interval: FOLLOW_SWEEP_INTERVAL,
            max_duration: std::time::Duration::from_secs(600),
            poll_interval: std::time::Duration::from_millis(100),
            quiet_for: std::time::Duration::ZERO,
            drill: DrillPlan::default(),
            crash_rate: 0.0,
            seed: 1,
            hand_back_before_returning: false,
            stop_requested: None,
        }
    }
}

/// How long a worker's receive waits for a first message (SQS long polling; the embedded queue is woken by this
/// process's sends). A stopping run does not wait for it unless asked to; what it takes is handed back (`hand_back`),
/// and a queue that can end its waits early (the embedded one: [`Queue::end_waits`]) is told to.
const RECEIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a run asked to hand back before returning waits for its workers' last receives and their hand-backs:
/// the receives' wait, and time for the visibility changes.
pub const HAND_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// How often a following run sweeps once its queue drained, instead of at every poll: the deployed sweeper runs
/// on a schedule (every minute by default), and a sweep at every poll of an idle run writes to the store ten times a
/// second (each pass over the dead-letter queue hides and releases the letters it holds), wakes every other
/// process's waiting receives, and keeps those letters from an operator's concurrent `synctrail dead-letters` pass.
pub const FOLLOW_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a worker pauses after a retryable failure (a receive or a delete refused while the store is busy or
/// the network is down) before it receives again.
const RETRY_PAUSE: std::time::Duration = RECEIVE_RECHECK;

/// Failed sweeps in a row, with the queue empty (or failed measures of the queue, retryable ones), after which a run
/// stops with the error instead of polling until `max_duration` (a sweep that always fails would otherwise look like
/// a queue that never drains).
pub const SWEEP_FAILURES_TO_GIVE_UP: u32 = 3;

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    /// Invocations of the handler.
    pub invocations: u64,
    /// Records handed to the handler.
    pub records: u64,
    /// Records reported as batch item failures (returned for retry).
    pub retried: u64,
    /// Records moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Invocations that died mid-batch (drill).
    pub crashes: u64,
    /// Records that repeated an event already done.
    pub redelivered: u64,
    /// Re-drives sent by the sweeper.
    pub swept: u64,
    /// Final statuses reached by records in this run.
    pub statuses: BTreeMap<Status, u64>,
    /// Whether the queue was drained (false when `max_duration` ran out first).
    pub drained: bool,
    /// Whether the run stopped because it was asked to (`RunOptions::stop_requested`).
    pub interrupted: bool,
}

/// The local event source over one backend.
pub struct LocalRuntime {
    ports: Ports,
    settings: Settings,
}

impl LocalRuntime {
    /// A runtime over `ports` (the destination is wrapped per worker for drills).
    pub fn new(ports: Ports, settings: Settings) -> Self {
        Self { ports, settings }
    }

    /// Runs until the queue is quiescent (or `max_duration`), calling `progress` every `poll_interval`; once
    /// drained, a following run sweeps every `sweep_interval`. Stops with the sweep's error when the queue is empty
    /// but [`SWEEP_FAILURES_TO_GIVE_UP`] sweeps in a row fail, and with a worker's error as soon as one ends on an
    /// error it cannot retry; however it ends, its workers are stopped and their last receives handed back first.
    pub async fn run(
        &self,
        options: &RunOptions,
        progress: &(dyn Fn(&RunStats) + Sync),
    ) -> Result<RunStats, StoreError> {
        let stats = Arc::new(Mutex::new(RunStats::default()));
        let (stop, stopping) = watch::channel(false);
        let mut workers = Vec::new();
        for index in 0..options.workers.max(1) {
            let worker = self.worker(options, index as u64);
            let (stats, stopping, options) = (Arc::clone(&stats), stopping.clone(), options.clone());
            workers.push(tokio::spawn(async move { worker.run(&options, &stats, stopping).await }));
        }
        let watched = self.watch(options, &stats, &workers, progress).await;
        stop.send_replace(true);
        let (mut hand_backs, mut failed) = (Vec::new(), None);
        for worker in workers {
            match worker.await {
                Ok(Ok(hand_back)) => hand_backs.extend(hand_back),
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => failed = failed.or(Some(StoreError::Backend(format!("a worker died: {e}").into()))),
            }
        }
        // Every receive left running has started (above): told now, those of a queue that can end its waits end at
        // once instead of after `RECEIVE_WAIT`.
        self.ports.queue.end_waits();
        if options.hand_back_before_returning {
            wait_for_hand_backs(hand_backs).await;
        }
        // A worker's error comes first: it is why the watch ended early.
        let ended = match (failed, watched) {
            (Some(error), _) | (None, Err(error)) => return Err(error),
            (None, Ok(ended)) => ended,
        };
        let mut stats = lock(&stats).clone();
        stats.drained = ended.drained;
        stats.interrupted = ended.interrupted;
        progress(&stats);
        Ok(stats)
    }

    /// Polls the run until it is over: the queue drained (not following), `max_duration` over, a stop requested, or
    /// a worker ended (which it does only on an error it cannot retry: the caller collects it). Returns why; an
    /// error ends it too. Either way the caller stops the workers.
    async fn watch(
        &self,
        options: &RunOptions,
        stats: &Mutex<RunStats>,
        workers: &[JoinHandle<WorkerResult>],
        progress: &(dyn Fn(&RunStats) + Sync),
    ) -> Result<Ended, StoreError> {
        let started = std::time::Instant::now();
        let sweeper = Engine::new(self.ports.clone(), self.settings.clone());
        let mut ended = Ended::default();
        let mut quiet_since: Option<std::time::Instant> = None;
        let mut last_sweep: Option<std::time::Instant> = None;
        let mut failed_sweeps = 0;
        let mut failed_depths = 0;
        let mut invocations_seen = 0;
        while started.elapsed() < options.max_duration {
            tokio::time::sleep(options.poll_interval).await;
            if options.stop_requested.is_some_and(|stop| stop.load(Ordering::SeqCst)) {
                ended.interrupted = true;
                break;
            }
            if workers.iter().any(JoinHandle::is_finished) {
                break;
            }
            let invocations = {
                let stats = lock(stats);
                progress(&stats);
                stats.invocations
            };
            // An invocation ended since the last poll: the queue is not quiescent, and measuring it (on the
            // embedded queue, a pass over every message) would only take time from the workers. It is measured
            // once a poll interval passes without one.
            if invocations != invocations_seen {
                invocations_seen = invocations;
                quiet_since = None;
                continue;
            }
            // Drained (and following): the queue is swept on its own interval, not at every poll.
            if ended.drained && last_sweep.is_some_and(|at| at.elapsed() < options.sweep_interval) {
                quiet_since = None;
                continue;
            }
            let depth = match self.ports.queue.depth().await {
                Ok(depth) => {
                    failed_depths = 0;
                    depth
                }
                // A store busy for a moment does not end the run (a following one least of all).
                Err(e) if e.is_retryable() && failed_depths + 1 < SWEEP_FAILURES_TO_GIVE_UP => {
                    failed_depths += 1;
                    tracing::warn!(error = %e, "measuring the queue failed; trying again at the next poll");
                    quiet_since = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if depth.visible + depth.in_flight + depth.delayed > 0 {
                quiet_since = None;
                continue;
            }
            if quiet_since.get_or_insert_with(std::time::Instant::now).elapsed() < options.quiet_for {
                continue;
            }
            last_sweep = Some(std::time::Instant::now());
            let report =
                sweeper.sweep(1000, &Invocation { function: Some("sweeper:local".into()), ..Default::default() }).await;
            match report {
                Ok(report) if report.redriven.is_empty() && report.settles_finished.is_empty() => {
                    failed_sweeps = 0;
                    ended.drained = true;
                    if !options.follow {
                        break;
                    }
                }
                Ok(report) => {
                    failed_sweeps = 0;
                    lock(stats).swept += (report.redriven.len() + report.settles_finished.len()) as u64;
                    quiet_since = None;
                }
                Err(e) => {
                    failed_sweeps += 1;
                    if failed_sweeps >= SWEEP_FAILURES_TO_GIVE_UP {
                        return Err(StoreError::Unavailable(
                            format!(
                                "the queue is empty but the sweep failed {failed_sweeps} times in a row, so the run \
                                 cannot tell whether it is done: {e}; fix the store and run again"
                            )
                            .into(),
                        ));
                    }
                    tracing::warn!(error = %e, "sweep failed");
                }
            }
        }
        Ok(ended)
    }

    fn worker(&self, options: &RunOptions, index: u64) -> Worker {
        let seed = options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(index);
        let drill = Arc::new(DrillDestination::new(
            Arc::clone(&self.ports.destination),
            Arc::clone(&self.ports.clock),
            options.drill.clone(),
            seed,
        ));
        let ports = Ports { destination: Arc::clone(&drill) as Arc<dyn Destination>, ..self.ports.clone() };
        let engine = Arc::new(Engine::new(ports, self.settings.clone()).with_seed(seed));
        Worker {
            // The runtime prints no EMF lines, so none are made.
            processor: Processor::new(engine, options.safety_margin).with_concurrency(options.lanes).without_metrics(),
            queue: Arc::clone(&self.ports.queue),
            drill,
            rng: SmallRng::seed_from_u64(seed ^ 0x00C0_FFEE),
            name: format!("processor-{index}"),
        }
    }
}

/// A request id and an X-Ray trace header shaped as Lambda's: a random UUID (version 4), and a root of the time and
/// 96 random bits with a parent segment. Records here then hold what a deployment's hold, and are the size they are
/// there (the cost benchmark prices them; ids such as `processor-0-1` compressed to a few bytes).
fn lambda_ids(rng: &mut SmallRng, now: DateTime<Utc>) -> (String, String) {
    let uuid = (rng.random::<u128>() & !(0xF000 << 64) & !(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48);
    let hex = format!("{uuid:032x}");
    let request_id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    let root = rng.random::<u128>() >> 32;
    let trace_id = format!("Root=1-{:08x}-{root:024x};Parent={:016x};Sampled=1", now.timestamp(), rng.random::<u64>());
    (request_id, trace_id)
}

/// Why a run's watch ended (when not on an error).
#[derive(Debug, Default)]
struct Ended {
    drained: bool,
    interrupted: bool,
}

/// What a worker ends with: the task handing back its last receive, if one was under way; or the error, which it
/// could not retry, that ended it before the run stopped.
type WorkerResult = Result<Option<JoinHandle<()>>, StoreError>;

struct Worker {
    processor: Processor,
    queue: Arc<dyn Queue>,
    drill: Arc<DrillDestination>,
    rng: SmallRng,
    name: String,
}

impl Worker {
    /// Receives and invokes until the run stops. A receive waits for messages instead of the worker sleeping
    /// between empty ones. When the run stops during a receive, the worker returns at once and leaves the receive
    /// to a task of its own, which hands back what it took: SQS goes on with a long poll whose client went away
    /// (for up to [`RECEIVE_WAIT`]), and a message it took then — one sent right after the run ended, say — would
    /// stay invisible for the whole visibility timeout. That task is returned. A retryable failure (a receive or a
    /// delete refused while the store is busy or the network is down) is logged and the worker goes on after
    /// [`RETRY_PAUSE`]; any other ends it with the error, and the run with it.
    async fn run(
        mut self,
        options: &RunOptions,
        stats: &Mutex<RunStats>,
        mut stopping: watch::Receiver<bool>,
    ) -> WorkerResult {
        loop {
            if *stopping.borrow() {
                return Ok(None);
            }
            let queue = Arc::clone(&self.queue);
            let (max, visibility) = (options.batch_size, options.visibility_timeout);
            // Set at the receive's first poll: one the stop overtook before that has done nothing, and is dropped.
            let started = Arc::new(AtomicBool::new(false));
            let starting = Arc::clone(&started);
            let mut receive = Box::pin(async move {
                starting.store(true, Ordering::SeqCst);
                queue.receive_waiting(max, visibility, RECEIVE_WAIT).await
            });
            let received = tokio::select! {
                biased;
                stop = stopping.wait_for(|stopped| *stopped) => {
                    drop(stop);
                    None
                }
                received = &mut receive => Some(received),
            };
            let Some(received) = received else {
                if !started.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                return Ok(Some(tokio::spawn(hand_back(Arc::clone(&self.queue), receive))));
            };
            let messages = match received {
                Ok(messages) => messages,
                // Throttled or busy: a short pause, then again.
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if messages.is_empty() {
                continue;
            }
            let delete = self.invoke(messages, options, stats).await;
            match self.queue.delete(&delete).await {
                Ok(()) => {}
                // Busy or unreachable: what was not deleted comes back after its visibility timeout, and is
                // recognised then as a repeat of an event already done.
                Err(e) if e.is_retryable() => {
                    tracing::warn!(worker = %self.name, messages = delete.len(), error = %e, "deleting what an invocation completed failed: those messages come back after their visibility timeout");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One invocation: the handler over the batch; returns the receipts Lambda would delete.
    async fn invoke(
        &mut self,
        messages: Vec<QueueMessage>,
        options: &RunOptions,
        stats: &Mutex<RunStats>,
    ) -> Vec<String> {
        let event = sqs_event(&messages);
        let now = self.processor.engine().ports().clock.now();
        let (request_id, trace_id) = lambda_ids(&mut self.rng, now);
        let context = InvocationContext {
            deadline: now + options.function_timeout,
            function: Some(format!("{}:$LATEST", self.name)),
            trace_id: Some(trace_id),
            request_id,
        };
        let crash = self.rng.random::<f64>() < options.crash_rate;
        if crash {
            self.drill.arm_crash();
        }
        let batch = tokio::select! {
            batch = self.processor.process_batch(event, &context) => Some(batch),
            () = self.drill.crashed() => None,
        };
        self.drill.disarm_crash();
        Self::account(&messages, batch, stats)
    }

    /// Counts the invocation's results and returns the receipts Lambda would delete.
    fn account(
        messages: &[QueueMessage],
        batch: Option<synctrail_processor::BatchResult>,
        stats: &Mutex<RunStats>,
    ) -> Vec<String> {
        let mut s = lock(stats);
        s.invocations += 1;
        s.records += messages.len() as u64;
        let Some(batch) = batch else {
            // Died mid-batch: no response, so every message of the batch comes back after its visibility timeout.
            s.crashes += 1;
            return Vec::new();
        };
        let Ok(response) = batch.lambda_response() else {
            // The invocation failed as a whole: every message of the batch comes back.
            s.retried += messages.len() as u64;
            return Vec::new();
        };
        let failed: HashSet<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        let mut delete = Vec::new();
        for (message, result) in messages.iter().zip(&batch.records) {
            if let RecordResult::Processed(outcome) = result {
                if let Some(status) = outcome.status.filter(|_| !outcome.redelivered) {
                    *s.statuses.entry(status).or_default() += 1;
                }
                s.redelivered += u64::from(outcome.redelivered);
                if outcome.disposition == Disposition::DeadLetter {
                    s.dead_lettered += 1;
                    continue;
                }
            }
            if failed.contains(message.message_id.as_str()) {
                s.retried += 1;
            } else {
                delete.push(message.receipt_handle.clone());
            }
        }
        delete
    }
}

/// Lets a receive left by a stopping worker end, then makes what it took visible again at once. A failure is only
/// logged: such a message comes back after its visibility timeout anyway.
async fn hand_back(
    queue: Arc<dyn Queue>,
    receive: impl std::future::Future<Output = Result<Vec<QueueMessage>, StoreError>>,
) {
    for message in receive.await.unwrap_or_default() {
        if let Err(e) = queue.change_visibility(&message.receipt_handle, Duration::zero()).await {
            tracing::warn!(message_id = %message.message_id, error = %e, "a message received as the run stopped could not be handed back: it comes back after its visibility timeout");
        }
    }
}

/// Waits up to [`HAND_BACK_WAIT`] for `hand_backs` to end; one that doesn't is left running and said so.
async fn wait_for_hand_backs(hand_backs: Vec<JoinHandle<()>>) {
    let all = futures_util::future::join_all(hand_backs);
    if tokio::time::timeout(HAND_BACK_WAIT, all).await.is_err() {
        tracing::warn!(
            "the run's last receives did not end in time: a message they take comes back after its visibility timeout"
        );
    }
}

fn lock(stats: &Mutex<RunStats>) -> std::sync::MutexGuard<'_, RunStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_ids_are_shaped_as_lambdas_and_new_for_each_invocation() {
        let mut rng = SmallRng::seed_from_u64(7);
        let now = DateTime::from_timestamp(1_796_284_920, 0).expect("time");
        let (request_id, trace_id) = lambda_ids(&mut rng, now);
        let groups: Vec<&str> = request_id.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{request_id}");
        assert!(request_id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{request_id}");
        assert!(groups[2].starts_with('4'), "version 4: {request_id}");
        assert!(matches!(groups[3].chars().next(), Some('8' | '9' | 'a' | 'b')), "the RFC 4122 variant: {request_id}");
        let (root, rest) = trace_id.split_once(";Parent=").expect("a parent segment");
        assert!(root.starts_with("Root=1-6b1121f8-") && root.len() == "Root=1-6b1121f8-".len() + 24, "{trace_id}");
        assert!(rest.len() == 16 + ";Sampled=1".len() && rest.ends_with(";Sampled=1"), "{trace_id}");
        assert_ne!(lambda_ids(&mut rng, now), (request_id, trace_id));
    }
}
