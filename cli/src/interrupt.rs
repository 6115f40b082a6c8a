//! Ctrl-C and SIGTERM ask a running `synctrail run` to stop as its `--max-duration` would: the workers finish the
//! invocation they are in and hand back what their last receives took, so nothing is left in flight. A second
//! signal ends the process at once, as the first did before.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first SIGINT or SIGTERM once [`stop_on_interrupt`] was called.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What SIGINT and SIGTERM run: only async-signal-safe work, an atomic swap and, the second time, `_exit`.
extern "C" fn on_signal(_signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe; it ends the process without running anything else.
        unsafe { libc::_exit(130) };
    }
}

/// From now on, the first SIGINT or SIGTERM sets the returned flag instead of ending the process (a run that reads
/// it stops), and a second one ends it. When the handlers can't be installed, the signals end the process as before.
pub fn stop_on_interrupt() -> &'static AtomicBool {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls `_exit`, both async-signal-safe.
        if unsafe { libc::signal(signal, handler) } == libc::SIG_ERR {
            tracing::warn!(signal, "the signal's handler could not be installed: it ends the run at once");
        }
    }
    &INTERRUPTED
}
