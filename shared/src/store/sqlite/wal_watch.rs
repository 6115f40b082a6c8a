//! [`WalWatch`]: tells the receives waiting in this process that another process may have sent a message.
//!
//! Every commit to the database appends to its write-ahead log, so on Linux an inotify watch on that file sees each
//! one, this process's own commits included. A thread of its own blocks on the watch and wakes the waiting receives,
//! which then look at the queue (one index lookup) and go back to waiting when nothing is visible. Where there is no
//! inotify, or it can't be had (the per-user limit of instances, a log file not there yet), there is no watch and
//! waiting receives look every [`crate::store::RECEIVE_RECHECK`] instead.

use std::path::Path;
use std::sync::Weak;
use tokio::sync::Notify;

/// A running watch; dropping it ends the thread.
pub(crate) struct WalWatch {
    /// Its `Drop` ends the thread.
    #[cfg(target_os = "linux")]
    watch: linux::Watch,
}

impl WalWatch {
    /// Watches the log at `wal`, waking `arrivals`' waiters at each change while they exist; `None` without inotify.
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

    /// Whether changes still wake the waiters (the thread ends if the log file is deleted).
    pub(crate) fn is_live(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.watch.is_live()
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Weak};
    use tokio::sync::Notify;

    /// The inotify instance (shared with the thread that reads it), the watch on the log, and whether the thread
    /// still runs.
    pub(super) struct Watch {
        fd: Arc<OwnedFd>,
        watch: libc::c_int,
        live: Arc<AtomicBool>,
    }

    impl Watch {
        pub(super) fn start(wal: &Path, arrivals: Weak<Notify>) -> Option<Self> {
            let path = CString::new(wal.as_os_str().as_bytes()).ok()?;
            // SAFETY: plain system calls; the descriptor is owned by `OwnedFd` from here on.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no inotify: waiting receives look instead");
                return None;
            }
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            let watch = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
            if watch < 0 {
                tracing::debug!(path = %wal.display(), error = %std::io::Error::last_os_error(), "log not watched");
                return None;
            }
            let (reader, live) = (Arc::clone(&fd), Arc::new(AtomicBool::new(true)));
            let running = Arc::clone(&live);
            let spawned = std::thread::Builder::new().name("synctrail-wal-watch".to_owned()).spawn(move || {
                wake_on_changes(&reader, &arrivals);
                running.store(false, Ordering::SeqCst);
            });
            match spawned {
                Ok(_) => Some(Self { fd, watch, live }),
                Err(e) => {
                    tracing::debug!(error = %e, "log not watched");
                    None
                }
            }
        }
    }

    impl Watch {
        pub(super) fn is_live(&self) -> bool {
            self.live.load(Ordering::SeqCst)
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            // Removing the watch queues an `IN_IGNORED` event: the thread wakes up, sees it and ends.
            // SAFETY: `fd` is open (this value holds it) and `watch` is its watch.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), self.watch) };
        }
    }

    /// Blocks on `fd`'s events, waking the waiters of `arrivals` after each read, until the watch is removed or
    /// nobody can wait any more.
    fn wake_on_changes(fd: &OwnedFd, arrivals: &Weak<Notify>) {
        let mut events = [0_u8; 4096];
        loop {
            // SAFETY: `events` is writable for its whole length.
            let read = unsafe { libc::read(fd.as_raw_fd(), events.as_mut_ptr().cast(), events.len()) };
            if read < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if removed(events.get(..usize::try_from(read).unwrap_or(0)).unwrap_or_default()) {
                return;
            }
            let Some(arrivals) = arrivals.upgrade() else { return };
            arrivals.notify_waiters();
        }
    }

    /// Whether the events read include the end of the watch (`IN_IGNORED`: removed, or the file deleted).
    fn removed(mut events: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        while events.len() >= HEADER {
            // SAFETY: at least one header's bytes are there; it is read unaligned, as the kernel packs it.
            let event = unsafe { std::ptr::read_unaligned(events.as_ptr().cast::<libc::inotify_event>()) };
            if event.mask & libc::IN_IGNORED != 0 {
                return true;
            }
            let next = HEADER + usize::try_from(event.len).unwrap_or(usize::MAX);
            events = events.get(next..).unwrap_or_default();
        }
        false
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    /// An empty log in a fresh directory (kept by the first value), the notifier and a watch on the log.
    fn watched_log() -> (tempfile::TempDir, std::path::PathBuf, Arc<Notify>, WalWatch) {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("synctrail.db-wal");
        std::fs::write(&wal, b"").expect("the log");
        let arrivals = Arc::new(Notify::new());
        let watch = WalWatch::start(&wal, Arc::downgrade(&arrivals)).expect("inotify on this machine");
        (dir, wal, arrivals, watch)
    }

    #[tokio::test]
    async fn a_change_of_the_log_wakes_the_waiters_and_dropping_the_watch_ends_its_thread() {
        let (_dir, wal, arrivals, watch) = watched_log();

        let woken = arrivals.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut file = std::fs::OpenOptions::new().append(true).open(&wal).expect("open the log");
        file.write_all(b"another process's commit").expect("write");
        tokio::time::timeout(std::time::Duration::from_secs(10), woken).await.expect("woken by the change");
        assert!(watch.is_live());

        drop(watch);
        // With the watch gone, a change wakes nobody.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let woken = arrivals.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        file.write_all(b"later").expect("write");
        let later = tokio::time::timeout(std::time::Duration::from_millis(300), woken).await;
        assert!(later.is_err(), "a change after the watch was dropped woke a waiter");
    }

    #[tokio::test]
    async fn a_watch_whose_log_is_deleted_is_no_longer_live() {
        let (_dir, wal, _arrivals, watch) = watched_log();
        assert!(watch.is_live());
        std::fs::remove_file(&wal).expect("delete the log");
        for _ in 0..200 {
            if !watch.is_live() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the watch still counts as live 2 s after its log was deleted");
    }
}
