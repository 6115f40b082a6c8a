//! What the benchmark measures of the disk: bytes this process had written to storage, and the largest size a set
//! of files (write-ahead logs) reached while something ran.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes this process caused to be written to storage so far, net of writes cancelled before they reached it
/// (a file truncated while dirty): `write_bytes - cancelled_write_bytes` of `/proc/self/io`. `None` where the
/// kernel does not account I/O per process.
pub fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field =
        |name: &str| io.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
    Some(field("write_bytes")?.saturating_sub(field("cancelled_write_bytes").unwrap_or(0)))
}

/// How often [`PeakSize`] looks at the files.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Watches the sizes of some files on a thread of its own until stopped, keeping the largest size each reached.
pub struct PeakSize {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeakSize {
    /// Starts watching `files` (a missing file counts as empty).
    pub fn watch(files: Vec<PathBuf>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("synctrail-peak-size".to_owned()).spawn(move || {
            let mut peak = 0;
            loop {
                let done = stopped.load(Ordering::SeqCst);
                for file in &files {
                    peak = peak.max(std::fs::metadata(file).map_or(0, |m| m.len()));
                }
                if done {
                    return peak;
                }
                std::thread::sleep(LOOK_EVERY);
            }
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops watching (after one last look) and returns the largest size any of the files reached, in bytes.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_grow_with_a_synced_file() {
        // Beside the test binary (the target directory, on a disk), not in a temporary directory that may be tmpfs,
        // whose writes never reach storage.
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe.parent().expect("its directory").join(format!("synctrail-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let before = bytes_written();
        let path = dir.join("written");
        std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
        std::fs::File::open(&path).expect("open").sync_all().expect("sync");
        let after = bytes_written();
        std::fs::remove_dir_all(&dir).expect("clean up");
        // Linux accounts I/O per process (`/proc/self/io`): both are measured, and the synced megabyte is in them.
        #[cfg(target_os = "linux")]
        {
            let (before, after) = (before.expect("measured on Linux"), after.expect("measured on Linux"));
            assert!(after >= before + (1 << 20), "{before} → {after}");
        }
        // Elsewhere the kernel may not account it; where it does, the megabyte is in it.
        #[cfg(not(target_os = "linux"))]
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after >= before + (1 << 20), "{before} → {after}");
        }
    }

    #[test]
    fn the_peak_size_is_the_largest_a_file_reached() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("synctrail-peak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wal");
        std::fs::write(&path, vec![0u8; 4096]).expect("write");
        let watch = PeakSize::watch(vec![path.clone(), dir.join("missing")]).expect("watch");
        // While watched the file grows to 64 KiB, stays so for 50 looks (time enough for the watcher to see it
        // however it is scheduled), then shrinks to 1 KiB, smaller than it started, before the last look.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&[1u8; 61_440]).expect("grow");
        assert_eq!(std::fs::metadata(&path).expect("size").len(), 65_536);
        std::thread::sleep(LOOK_EVERY * 50);
        file.set_len(1024).expect("shrink");
        std::thread::sleep(LOOK_EVERY * 5);
        let peak = watch.stop();
        let last = std::fs::metadata(&path).expect("size").len();
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(last, 1024, "it had shrunk before the watch stopped");
        assert_eq!(peak, 65_536, "the largest it reached, not its first or last size");
    }
}
