//! A VFS over SQLite's default one that writes a commit's WAL frames with one system call instead of two per frame.
//!
//! SQLite writes each frame of the write-ahead log as two `pwrite`s, its 24-byte header and then its page
//! (`walWriteOneFrame`), so a commit of 27 pages made 54 system calls, each a trip through the kernel's buffered write
//! path for a page or two of the file. Files opened through this VFS are the default VFS's own files; a WAL file's
//! writes that follow each other in the file are gathered in memory and written together, at the latest when the page
//! of a commit frame (a frame header whose "database size after commit" field is not zero, as the WAL format defines
//! it) has been written: before SQLite publishes the commit in the shared WAL index, so no reader, in this process or
//! another, can look for frames that are not in the file yet. A crash before that loses only frames of a transaction
//! that had not committed, as a crash between two of SQLite's own writes would. A commit that rewrote frames it had
//! spilled ends with SQLite rewriting the checksums of the frames since, each read and then its header written: the
//! commit frame's header, written right after a read, is written at once, as no page follows it. Anything else done
//! with the file
//! (a read, a sync, a truncation, its size, a write elsewhere in it, closing it) writes what is gathered first.
//! Every other file (the database, a journal) is passed through untouched.

use rusqlite::ffi;
use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

/// The VFS's name, as connections ask for it.
pub(crate) const NAME: &CStr = c"synctrail-wal-writes";

/// WAL format: the file's header, then frames of a 24-byte header and a page.
const WAL_HEADER: i64 = 32;
const FRAME_HEADER: usize = 24;
/// Gathered bytes written at once whatever happens next, so a large transaction holds little memory.
const MAX_GATHERED: usize = 1 << 20;
/// The most one call of the default VFS writes: the unix VFS keeps only the low 17 bits of a write's length
/// (`seekAndWriteFd`), so a write must stay under 128 KiB.
const MAX_WRITE: usize = 120 * 1024;

/// Registers the VFS (once per process) and returns its name; an error when SQLite has no default VFS to wrap.
pub(crate) fn registered() -> Result<&'static CStr, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register).clone().map(|()| NAME)
}

/// The default VFS, which every call is passed on to.
static DEFAULT: OnceLock<Vfs> = OnceLock::new();

/// A pointer SQLite hands out for the life of the process.
#[derive(Clone, Copy)]
struct Vfs(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and meant to be used from every thread.
unsafe impl Send for Vfs {}
// SAFETY: as above.
unsafe impl Sync for Vfs {}

fn register() -> Result<(), String> {
    // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS (or NULL), which lives as long as the process.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err("SQLite has no default VFS".to_owned());
    }
    let default = *DEFAULT.get_or_init(|| Vfs(default));
    // SAFETY: `default.0` is a valid VFS; copying it keeps every method and `pAppData`, which they may read.
    let mut ours: ffi::sqlite3_vfs = unsafe { std::ptr::read(default.0) };
    let real_size = usize::try_from(ours.szOsFile).map_err(|_| "the default VFS's file size is negative".to_owned())?;
    ours.szOsFile = c_int::try_from(REAL_AT + real_size).map_err(|_| "file handle too large".to_owned())?;
    ours.zName = NAME.as_ptr();
    ours.pNext = std::ptr::null_mut();
    ours.xOpen = Some(open);
    // SAFETY: the VFS is leaked, so it outlives every connection; registering it as not the default changes
    // nothing for connections that don't name it.
    let rc = unsafe { ffi::sqlite3_vfs_register(Box::into_raw(Box::new(ours)), 0) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!("registering the VFS {NAME:?} failed with SQLite code {rc}"))
    }
}

/// The handle SQLite allocates (`szOsFile` bytes): this header, then the default VFS's own handle at [`REAL_AT`].
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// For a WAL file, what is gathered; null for every other file.
    gathered: *mut Gathered,
}

/// Where the default VFS's handle starts inside ours: a multiple of 16 bytes in, so it keeps the alignment of
/// SQLite's allocation (8 bytes).
const REAL_AT: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// WAL writes that follow each other in the file, not written yet.
#[derive(Default)]
struct Gathered {
    /// Where the first of them goes.
    offset: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: its page, the next write, ends the commit.
    commit_frame: bool,
    /// The last call was a read. A commit frame's header written right after one is a rewrite of a header already
    /// in the file (SQLite's `walRewriteChecksums` reads each frame, then writes its header with new checksums, the
    /// commit frame's last): no page follows it, so it ends the commit itself.
    after_read: bool,
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(default) = DEFAULT.get() else { return ffi::SQLITE_ERROR };
    let ours = file.cast::<File>();
    // SAFETY: SQLite allocated `szOsFile` bytes at `file`, aligned for any struct: room for `File` and, at `REAL_AT`,
    // the default VFS's handle, which its `xOpen` fills.
    unsafe {
        let real = file.cast::<u8>().add(REAL_AT).cast::<ffi::sqlite3_file>();
        (*ours).base.pMethods = std::ptr::null();
        let Some(real_open) = (*default.0).xOpen else { return ffi::SQLITE_ERROR };
        let rc = real_open(default.0, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let gathered = if flags & ffi::SQLITE_OPEN_WAL != 0 {
            Box::into_raw(Box::<Gathered>::default())
        } else {
            std::ptr::null_mut()
        };
        std::ptr::write(ours, File { base: ffi::sqlite3_file { pMethods: &METHODS }, real, gathered });
    }
    ffi::SQLITE_OK
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// Our handle and the default VFS's methods for it.
///
/// # Safety
/// `file` is a handle this VFS opened and has not closed.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut File, &'a ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, `file` holds a `File` whose `real` handle is open, so its methods are set.
    unsafe {
        let ours = &mut *file.cast::<File>();
        let methods = &*(*ours.real).pMethods;
        (ours, methods)
    }
}

/// Calls the default VFS's method `$method` on the real handle with `$args`, or returns `$missing` when it has none.
macro_rules! pass {
    ($file:expr, $method:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: SQLite calls the methods on handles this VFS opened.
        let (ours, methods) = unsafe { parts($file) };
        match methods.$method {
            // SAFETY: the default VFS's method, on its own handle, with SQLite's arguments.
            Some(method) => unsafe { method(ours.real $(, $arg)*) },
            None => $missing,
        }
    }};
}

/// Writes what `file` gathered; a failed write drops it (frames of a transaction that then fails).
///
/// # Safety
/// As [`parts`].
unsafe fn write_gathered(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract.
    let (ours, methods) = unsafe { parts(file) };
    if ours.gathered.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `gathered` is the box `open` made for this WAL file, owned by the handle.
    let gathered = unsafe { &mut *ours.gathered };
    gathered.commit_frame = false;
    if gathered.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(real_write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = gathered.offset;
    for chunk in gathered.bytes.chunks(MAX_WRITE) {
        let (Ok(amount), Ok(length)) = (c_int::try_from(chunk.len()), i64::try_from(chunk.len())) else {
            rc = ffi::SQLITE_IOERR_WRITE;
            break;
        };
        // SAFETY: the default VFS's write on its own handle, of bytes that live until it returns.
        rc = unsafe { real_write(ours.real, chunk.as_ptr().cast(), amount, offset) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += length;
    }
    gathered.bytes.clear();
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a handle this VFS opened, once; the default VFS's close clears its handle, so nothing is
    // read from it after.
    unsafe {
        let written = write_gathered(file);
        let (ours, methods) = parts(file);
        let gathered = std::mem::replace(&mut ours.gathered, std::ptr::null_mut());
        let rc = methods.xClose.map_or(ffi::SQLITE_OK, |real_close| real_close(ours.real));
        if !gathered.is_null() {
            drop(Box::from_raw(gathered));
        }
        if written != ffi::SQLITE_OK {
            written
        } else {
            rc
        }
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite writes through a handle this VFS opened.
    let (ours, _) = unsafe { parts(file) };
    if ours.gathered.is_null() {
        return pass!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, amount, offset);
    }
    let Ok(length) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) };
    // SAFETY: `gathered` is the box `open` made for this WAL file.
    let follows = unsafe {
        let gathered = &*ours.gathered;
        gathered.bytes.is_empty() || i64::try_from(gathered.bytes.len()).is_ok_and(|n| gathered.offset + n == offset)
    };
    if !follows {
        // SAFETY: as above.
        let rc = unsafe { write_gathered(file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    // SAFETY: as above; nothing else holds a reference into the box now.
    let gathered = unsafe { &mut *ours.gathered };
    if gathered.bytes.is_empty() {
        gathered.offset = offset;
    }
    gathered.bytes.extend_from_slice(bytes);
    let after_read = std::mem::take(&mut gathered.after_read);
    let commit_header = is_commit_frame_header(bytes, offset);
    let ends_commit = std::mem::take(&mut gathered.commit_frame) || (commit_header && after_read);
    // Its page, if one follows after all (a new frame whose header came after a read), ends the commit too.
    gathered.commit_frame = commit_header;
    if ends_commit || gathered.bytes.len() >= MAX_GATHERED {
        // SAFETY: as above.
        return unsafe { write_gathered(file) };
    }
    ffi::SQLITE_OK
}

/// Whether a write of `bytes` at `offset` of a WAL file is the header of a frame that commits a transaction: 24 bytes
/// after the file's header, whose second big-endian word (the database's size in pages after the commit) is not zero.
fn is_commit_frame_header(bytes: &[u8], offset: i64) -> bool {
    bytes.len() == FRAME_HEADER && offset >= WAL_HEADER && bytes.get(4..8).is_some_and(|size| size != [0; 4])
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite reads through a handle this VFS opened.
    let rc = unsafe { write_gathered(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: as above; `gathered` is the box `open` made for a WAL file, or null.
    unsafe {
        let (ours, _) = parts(file);
        if let Some(gathered) = ours.gathered.as_mut() {
            gathered.after_read = true;
        }
    }
    pass!(file, xRead, ffi::SQLITE_IOERR_READ, data, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as `read`.
    let rc = unsafe { write_gathered(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    pass!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as `read`.
    let rc = unsafe { write_gathered(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    pass!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as `read`.
    let rc = unsafe { write_gathered(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    pass!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: as `read`.
    let rc = unsafe { write_gathered(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    pass!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    pass!(file, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    pass!(file, xSectorSize, 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    pass!(file, xDeviceCharacteristics, 0)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    pass!(file, xShmMap, ffi::SQLITE_IOERR_SHMMAP, region, size, extend, out)
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    pass!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    pass!(file, xShmBarrier, ())
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    pass!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    // Without the default VFS's memory map, SQLite reads the page instead.
    pass!(
        file,
        xFetch,
        {
            // SAFETY: SQLite passes a place for the pointer.
            unsafe { *out = std::ptr::null_mut() };
            ffi::SQLITE_OK
        },
        offset,
        amount,
        out
    )
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    pass!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, Connection, OpenFlags};

    /// A connection to `path` through this VFS, in WAL mode with a small page cache (so large transactions spill
    /// frames before their commit), with the table `t` the tests write.
    fn gathering(path: &std::path::Path) -> Connection {
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), registered().expect("registered"))
            .expect("open through the VFS");
        conn.pragma_update(None, "journal_mode", "WAL").expect("WAL");
        conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
        conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no automatic checkpoint");
        conn.pragma_update(None, "cache_size", 16).expect("a small cache");
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
            .expect("table");
        conn
    }

    /// Every row's payload, as a connection through SQLite's default VFS (another process, for the log) reads them.
    fn read_by_another(path: &std::path::Path) -> Vec<(i64, String)> {
        let other = Connection::open(path).expect("open with the default VFS");
        let mut stmt = other.prepare("SELECT id, payload FROM t ORDER BY id").expect("prepare");
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    fn insert(conn: &mut Connection, ids: std::ops::Range<i64>) {
        let tx = conn.transaction().expect("begin");
        for id in ids {
            tx.execute("INSERT INTO t (id, payload) VALUES (?1, ?2)", params![id, format!("{id:0>600}")])
                .expect("insert");
        }
        tx.commit().expect("commit");
    }

    #[test]
    fn every_commit_is_in_the_log_for_a_connection_that_does_not_gather() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gathered.db");
        let mut conn = gathering(&path);

        // Small commits, one spilling its cache before the commit, and one larger than the most gathered at once.
        for start in 0..20 {
            insert(&mut conn, start * 3..start * 3 + 3);
            assert_eq!(read_by_another(&path).len(), usize::try_from(start * 3 + 3).expect("count"));
        }
        insert(&mut conn, 60..400);
        insert(&mut conn, 400..2_400);

        let rows = read_by_another(&path);
        assert_eq!(rows.len(), 2_400);
        assert!(rows.iter().enumerate().all(|(i, (id, payload))| {
            i64::try_from(i).is_ok_and(|i| i == *id) && *payload == format!("{id:0>600}")
        }));
        let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity");
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_rolled_back_transaction_that_spilled_frames_leaves_the_committed_rows_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rolled-back.db");
        let mut conn = gathering(&path);
        insert(&mut conn, 0..10);

        let tx = conn.transaction().expect("begin");
        for id in 10..500 {
            tx.execute("INSERT INTO t (id, payload) VALUES (?1, 'never')", params![id]).expect("insert");
        }
        tx.rollback().expect("rollback");
        insert(&mut conn, 10..20);

        let rows = read_by_another(&path);
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|(_, payload)| payload != "never"));
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        assert_eq!(read_by_another(&path).len(), 20);
    }

    #[test]
    fn a_commit_that_rewrote_a_spilled_page_is_whole_in_the_log_file_once_it_returns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rewritten.db");
        let mut conn = gathering(&path);
        insert(&mut conn, 0..10);
        // A transaction larger than the cache spills frames; changing a row of a spilled page again rewrites its
        // frame in place, so the commit ends by rewriting the checksums of the frames since (SQLite's
        // `walRewriteChecksums`): the last write is the commit frame's header, with no page after it.
        let tx = conn.transaction().expect("begin");
        for id in 10..600 {
            tx.execute("INSERT INTO t (id, payload) VALUES (?1, ?2)", params![id, format!("{id:0>600}")])
                .expect("insert");
        }
        tx.execute("UPDATE t SET payload = 'rewritten' WHERE id = 11", []).expect("update a spilled row");
        tx.commit().expect("commit");

        // What a crash now leaves: the files as they are on disk (no shared index), recovered from the log alone.
        let crashed = dir.path().join("crashed");
        std::fs::create_dir(&crashed).expect("dir");
        std::fs::copy(&path, crashed.join("rewritten.db")).expect("copy the database");
        std::fs::copy(dir.path().join("rewritten.db-wal"), crashed.join("rewritten.db-wal")).expect("copy the log");
        let rows = read_by_another(&crashed.join("rewritten.db"));
        assert_eq!(rows.len(), 600, "the commit's every frame is valid in the log");
        assert_eq!(rows[11].1, "rewritten");
        drop(conn);
    }

    /// Set in the child process of the kill test: the database it writes to.
    const CHILD_DATABASE: &str = "SYNCTRAIL_WAL_WRITES_TEST_DATABASE";

    /// The kill test's child: commits 4 rows at a time through the VFS and says so after each commit returns.
    fn write_until_killed(path: &std::path::Path) {
        use std::io::Write;
        let mut conn = gathering(path);
        let mut out = std::io::stdout().lock();
        for commit in 0..100_000_i64 {
            insert(&mut conn, commit * 4..commit * 4 + 4);
            writeln!(out, "committed {commit}").and_then(|()| out.flush()).expect("report");
        }
    }

    #[test]
    fn a_writer_killed_at_any_moment_leaves_every_commit_it_saw_return_and_nothing_else() {
        if let Some(path) = std::env::var_os(CHILD_DATABASE) {
            write_until_killed(std::path::Path::new(&path));
            return;
        }
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("killed.db");
        for kill_after in [1_u32, 37, 200] {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(dir.path().join("killed.db-wal"));
            let _ = std::fs::remove_file(dir.path().join("killed.db-shm"));
            let mut child = std::process::Command::new(std::env::current_exe().expect("this test binary"))
                .args([
                    "--exact",
                    "store::sqlite::wal_writes::tests::a_writer_killed_at_any_moment_leaves_every_commit_it_saw_return_and_nothing_else",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DATABASE, &path)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("the writer");
            // The child's reports are read on a thread (a pipe read has no timeout), so the wait for them has a
            // deadline: a writer that stalls is killed and the test fails.
            let stdout = child.stdout.take().expect("its output");
            let (reports, reported) = std::sync::mpsc::channel::<String>();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    // Ends at the killed child's end of output, or once the test stops listening.
                    if line.map_err(|_| ()).and_then(|line| reports.send(line).map_err(|_| ())).is_err() {
                        break;
                    }
                }
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut seen = None;
            let stalled = loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match reported.recv_timeout(left) {
                    Ok(line) => {
                        if let Some(n) = line.strip_prefix("committed ") {
                            seen = Some(n.parse::<i64>().expect("a commit number"));
                            if seen >= Some(i64::from(kill_after)) {
                                break None;
                            }
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        break Some(format!("no commit {kill_after} within 60 s (last seen {seen:?})"));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        break Some(format!("the writer ended before commit {kill_after} (last seen {seen:?})"));
                    }
                }
            };
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            if let Some(stalled) = stalled {
                panic!("{stalled}");
            }
            let seen = seen.expect("the writer committed before it was killed");

            let rows = read_by_another(&path);
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            assert!(ids.len().is_multiple_of(4), "a commit of 4 rows is all there or not at all: {} rows", ids.len());
            assert!(ids.iter().enumerate().all(|(i, id)| i64::try_from(i).is_ok_and(|i| i == *id)), "no gap");
            assert!(
                i64::try_from(ids.len()).is_ok_and(|n| n >= (seen + 1) * 4),
                "killed after commit {seen} returned, found {} rows",
                ids.len()
            );
            let check: String = Connection::open(&path)
                .expect("open")
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("check");
            assert_eq!(check, "ok");
        }
    }

    #[test]
    fn only_a_frame_header_with_a_database_size_ends_a_commit() {
        let mut header = [0_u8; FRAME_HEADER];
        header[3] = 7; // page 7
        assert!(!is_commit_frame_header(&header, WAL_HEADER), "a frame of a transaction still going on");
        header[7] = 12; // 12 pages after the commit
        assert!(is_commit_frame_header(&header, WAL_HEADER));
        assert!(!is_commit_frame_header(&header, 0), "the log's own header");
        assert!(!is_commit_frame_header(&[1; 2048], WAL_HEADER + 24), "a page");
    }
}
