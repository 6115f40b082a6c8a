//! [`WalWatch`]: tells the receives waiting in this process that another process may have sent a message.
//!
//! Every commit to the database appends to its write-ahead log, so on Linux an inotify watch on that file sees each
//! one, this process's own commits included. A thread of its own blocks on the watch and wakes the waiting receives,
//! which then look at the queue (one index lookup) and go back to waiting when nothing is visible.
//!
//! The watch is on the log only while a receive waits ([`WalWatch::arm`]): with a watch on it, every write to the log
//! (each page of every commit) queues an event and wakes the thread, which under load cost a sixth of the process's
//! CPU. Busy workers find messages at their first look and never arm it. Where there is no inotify, or it can't be had
//! (the per-user limit of instances, a log file not there yet), there is no watch and waiting receives look every
//! [`crate::store::RECEIVE_RECHECK`] instead.

use std::path::Path;
use std::sync::Weak;
use tokio::sync::Notify;

/// The inotify instance and the thread that reads it; dropping it ends the thread.
pub(crate) struct WalWatch {
    #[cfg(target_os = "linux")]
    watch: linux::Watch,
}

/// The log watched on behalf of one waiting receive; the watch is removed when the last of them is dropped.
pub(crate) struct Armed<'a> {
    #[cfg(target_os = "linux")]
    armed: linux::Armed<'a>,
    #[cfg(not(target_os = "linux"))]
    _watch: std::marker::PhantomData<&'a WalWatch>,
}

impl WalWatch {
    /// Readies a watch of the log at `wal` that wakes `arrivals`' waiters at each change while it is armed and they
    /// exist; `None` without inotify.
    pub(crate) fn start(wal: &Path, arrivals: Weak<Notify>) -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            linux::Watch::start(wal, arrivals).map(|watch| Self { watch })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (wal, arrivals);
            None
        }
    }

    /// Watches the log until the returned guard (and every other one) is dropped; `None` when it can't be watched
    /// (the log is not there).
    pub(crate) fn arm(&self) -> Option<Armed<'_>> {
        #[cfg(target_os = "linux")]
        {
            self.watch.arm().map(|armed| Armed { armed })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

impl Armed<'_> {
    /// Whether changes of the log still wake the waiters: a watch lost with its file (the log deleted when the last
    /// connection closed, then made anew) is put on the new file; false when that fails.
    pub(crate) fn is_live(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.armed.is_live()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::{Arc, Mutex, MutexGuard, Weak};
    use tokio::sync::Notify;

    /// The inotify instance (shared with the thread that reads it), the log's path, who waits on it, and the write
    /// end of the pipe whose closing ends the thread.
    pub(super) struct Watch {
        inotify: Arc<OwnedFd>,
        path: CString,
        state: Arc<Mutex<Armings>>,
        _stop: OwnedFd,
    }

    /// The receives waiting on the watch, and the watch descriptor while the log is watched.
    #[derive(Default)]
    struct Armings {
        waiting: usize,
        watched: Option<libc::c_int>,
    }

    /// One waiting receive's share of the watch.
    pub(super) struct Armed<'a> {
        watch: &'a Watch,
    }

    impl Watch {
        pub(super) fn start(wal: &Path, arrivals: Weak<Notify>) -> Option<Self> {
            let path = CString::new(wal.as_os_str().as_bytes()).ok()?;
            // SAFETY: plain system call; the descriptor is owned by `OwnedFd` from here on.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no inotify: waiting receives look instead");
                return None;
            }
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            let inotify = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
            let mut ends: [libc::c_int; 2] = [0; 2];
            // SAFETY: `ends` has room for the two descriptors the call writes.
            if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no pipe: waiting receives look instead");
                return None;
            }
            // SAFETY: both descriptors are fresh and owned from here on.
            let (stopped, stop) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
            let state = Arc::new(Mutex::new(Armings::default()));
            let (reader, shared) = (Arc::clone(&inotify), Arc::clone(&state));
            let spawned = std::thread::Builder::new()
                .name("synctrail-wal-watch".to_owned())
                .spawn(move || wake_on_changes(&reader, &stopped, &shared, &arrivals));
            match spawned {
                Ok(_) => Some(Self { inotify, path, state, _stop: stop }),
                Err(e) => {
                    tracing::debug!(error = %e, "log not watched");
                    None
                }
            }
        }

        pub(super) fn arm(&self) -> Option<Armed<'_>> {
            let mut state = lock(&self.state);
            if !self.watch_log(&mut state) {
                return None;
            }
            state.waiting += 1;
            Some(Armed { watch: self })
        }

        /// Puts the watch on the log unless it is there; false when that fails.
        fn watch_log(&self, state: &mut Armings) -> bool {
            if state.watched.is_none() {
                // SAFETY: `inotify` is open (this value holds it) and `path` is NUL-terminated.
                let watched =
                    unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), self.path.as_ptr(), libc::IN_MODIFY) };
                if watched < 0 {
                    tracing::debug!(error = %std::io::Error::last_os_error(), "log not watched: the receive looks instead");
                    return false;
                }
                state.watched = Some(watched);
            }
            true
        }
    }

    #[cfg(test)]
    impl Watch {
        /// The inotify instance as the thread holds it: gone once the thread has ended.
        pub(super) fn reader(&self) -> Weak<OwnedFd> {
            Arc::downgrade(&self.inotify)
        }
    }

    impl Armed<'_> {
        pub(super) fn is_live(&self) -> bool {
            self.watch.watch_log(&mut lock(&self.watch.state))
        }
    }

    impl Drop for Armed<'_> {
        fn drop(&mut self) {
            let mut state = lock(&self.watch.state);
            state.waiting = state.waiting.saturating_sub(1);
            if state.waiting == 0 {
                if let Some(watched) = state.watched.take() {
                    // Its `IN_IGNORED` names a descriptor no longer current: the thread wakes nobody for it.
                    // SAFETY: `inotify` is open and `watched` was its watch (a watch already gone fails harmlessly).
                    unsafe { libc::inotify_rm_watch(self.watch.inotify.as_raw_fd(), watched) };
                }
            }
        }
    }

    fn lock(state: &Mutex<Armings>) -> MutexGuard<'_, Armings> {
        state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for `inotify`'s events or the end of the pipe (`stopped`: the watch was dropped), waking the waiters of
    /// `arrivals` after each read that saw a change of the log or the loss of its watch, until the pipe ends or
    /// nobody can wait any more.
    fn wake_on_changes(inotify: &OwnedFd, stopped: &OwnedFd, state: &Mutex<Armings>, arrivals: &Weak<Notify>) {
        let mut events = [0_u8; 4096];
        loop {
            let mut fds = [
                libc::pollfd { fd: inotify.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: stopped.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: `fds` is an array of two initialised `pollfd`s.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            // SAFETY: `events` is writable for its whole length.
            let read = unsafe { libc::read(inotify.as_raw_fd(), events.as_mut_ptr().cast(), events.len()) };
            if read < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let read = events.get(..usize::try_from(read).unwrap_or(0)).unwrap_or_default();
            if !worth_a_look(read, &mut lock(state)) {
                continue;
            }
            let Some(arrivals) = arrivals.upgrade() else { return };
            arrivals.notify_waiters();
        }
    }

    /// Whether the events read tell the waiters something: a change of the log, or the loss of the current watch
    /// (its file deleted: forgotten here, so that the next waiter watches the new log). The `IN_IGNORED` of a watch
    /// removed by its last waiter tells nobody anything.
    fn worth_a_look(mut events: &[u8], state: &mut Armings) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut worth = false;
        while events.len() >= HEADER {
            // SAFETY: at least one header's bytes are there; it is read unaligned, as the kernel packs it.
            let event = unsafe { std::ptr::read_unaligned(events.as_ptr().cast::<libc::inotify_event>()) };
            if event.mask & libc::IN_IGNORED == 0 {
                worth = true;
            } else if state.watched == Some(event.wd) {
                state.watched = None;
                worth = true;
            }
            let next = HEADER + usize::try_from(event.len).unwrap_or(usize::MAX);
            events = events.get(next..).unwrap_or_default();
        }
        worth
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    /// An empty log in a fresh directory (kept by the first value), the notifier and a watch ready for it.
    fn watched_log() -> (tempfile::TempDir, std::path::PathBuf, Arc<Notify>, WalWatch) {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("synctrail.db-wal");
        std::fs::write(&wal, b"").expect("the log");
        let arrivals = Arc::new(Notify::new());
        let watch = WalWatch::start(&wal, Arc::downgrade(&arrivals)).expect("inotify on this machine");
        (dir, wal, arrivals, watch)
    }

    /// Whether writing `bytes` to `file` wakes a waiter of `arrivals` within `within`.
    async fn wakes(arrivals: &Notify, file: &mut std::fs::File, bytes: &[u8], within: Duration) -> bool {
        let woken = arrivals.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        file.write_all(bytes).expect("write");
        tokio::time::timeout(within, woken).await.is_ok()
    }

    #[tokio::test]
    async fn a_change_of_the_log_wakes_the_waiters_only_while_a_receive_has_the_watch_armed() {
        let (_dir, wal, arrivals, watch) = watched_log();
        let mut file = std::fs::OpenOptions::new().append(true).open(&wal).expect("open the log");

        assert!(!wakes(&arrivals, &mut file, b"a commit nobody waits for", Duration::from_millis(300)).await);

        let first = watch.arm().expect("the log is there");
        let second = watch.arm().expect("armed twice");
        assert!(wakes(&arrivals, &mut file, b"another process's commit", Duration::from_secs(10)).await);
        drop(first);
        assert!(second.is_live());
        assert!(wakes(&arrivals, &mut file, b"still watched for the second", Duration::from_secs(10)).await);

        drop(second);
        assert!(!wakes(&arrivals, &mut file, b"after the last waiter", Duration::from_millis(300)).await);
    }

    #[tokio::test]
    async fn dropping_the_watch_ends_its_thread() {
        let (_dir, _wal, _arrivals, watch) = watched_log();
        let _armed_then_dropped = watch.arm().expect("the log is there");
        drop(_armed_then_dropped);
        let reader = watch.watch.reader();
        drop(watch);
        for _ in 0..200 {
            if reader.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the watch's thread still runs 2 s after the watch was dropped");
    }

    #[tokio::test]
    async fn a_watch_whose_log_is_deleted_wakes_its_waiters_and_watches_the_log_made_anew() {
        let (_dir, wal, arrivals, watch) = watched_log();
        let armed = watch.arm().expect("the log is there");

        let woken = arrivals.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        std::fs::remove_file(&wal).expect("delete the log");
        tokio::time::timeout(Duration::from_secs(10), woken).await.expect("the loss of the watch wakes the waiters");
        assert!(!armed.is_live(), "no log to watch");

        std::fs::write(&wal, b"").expect("the log made anew");
        assert!(armed.is_live());
        let mut file = std::fs::OpenOptions::new().append(true).open(&wal).expect("open the new log");
        assert!(wakes(&arrivals, &mut file, b"a commit to the new log", Duration::from_secs(10)).await);
    }

    #[test]
    fn nothing_is_watched_where_there_is_no_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let arrivals = Arc::new(Notify::new());
        let watch = WalWatch::start(&dir.path().join("absent-wal"), Arc::downgrade(&arrivals)).expect("inotify");
        assert!(watch.arm().is_none());
    }
}
