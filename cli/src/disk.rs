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
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after >= before + (1 << 20), "{before} → {after}");
        }
    }

    #[test]
    fn the_peak_size_is_the_largest_a_file_reached() {
        let dir = std::env::temp_dir().join(format!("synctrail-peak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wal");
        std::fs::write(&path, vec![0u8; 4096]).expect("write");
        let watch = PeakSize::watch(vec![path.clone(), dir.join("missing")]).expect("watch");
        let peak = watch.stop();
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(peak, 4096);
    }
}
