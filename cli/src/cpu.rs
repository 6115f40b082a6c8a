//! The process's CPU time (user + system), for the benchmark's CPU time per event.

use std::time::Duration;

/// User plus system CPU time this process has used so far, from `getrusage(RUSAGE_SELF)`.
#[cfg(unix)]
pub fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`, which getrusage fills on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it initialised the whole struct (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// CPU time is not measured on this platform.
#[cfg(not(unix))]
pub fn process_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu_time().expect("CPU time is measured on unix");
        // Busy work for at least 100 ms of wall time (at most a few seconds, however slow the machine): far more
        // than the microsecond the measure counts in.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        for round in 0..100_000u64 {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i ^ round));
            }
            if started.elapsed() >= Duration::from_millis(100) {
                break;
            }
        }
        std::hint::black_box(x);
        assert!(started.elapsed() >= Duration::from_millis(100), "the work ran for 100 ms");
        let after = process_cpu_time().expect("CPU time is measured on unix");
        assert!(after > before, "{before:?} → {after:?} after 100 ms of work");
    }
}
