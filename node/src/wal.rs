//! The segment log under the Raft log store ([`crate::raft`]): a record is appended here and
//! fsynced before it counts as stored, and read back from here after a restart. Each record
//! carries its index (the Raft log index) and a checksum; an index of each record's offset is
//! kept in memory, so one record reads with one positioned read.
//!
//! ```text
//!  <first index, 20 digits>.log    segments, rolled past `segment_bytes`
//!  record = [payload length u32 LE][crc32(index ‖ payload) u32 LE][index u64 LE][payload]
//! ```
//!
//! A short record or a bad checksum at the end of the newest segment is a write torn by a crash
//! (it was never acknowledged): the segment is cut there. Anywhere else it is corruption and
//! opening fails rather than silently dropping acknowledged writes. A purge deletes the
//! segments wholly at or below its index; a truncation cuts the log back to an index.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes before a record's payload.
const HEADER: usize = 16;

/// The largest payload a record may hold.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O on {path} failed")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write-ahead log segment {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("record index {index} is not above the log's last index {last}")]
    IndexNotIncreasing { index: u64, last: u64 },
    #[error("record of {bytes} bytes is over the limit of {MAX_RECORD_BYTES} bytes")]
    RecordTooLarge { bytes: usize },
}

pub type Result<T, E = WalError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A segment file and where each of its records starts.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first: u64,
    /// (index, byte offset) of each record, in order.
    records: Vec<(u64, u64)>,
    bytes: u64,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        self.records.last().map(|r| r.0)
    }

    fn offset_of(&self, index: u64) -> Option<u64> {
        self.records
            .binary_search_by_key(&index, |r| r.0)
            .ok()
            .map(|i| self.records[i].1)
    }
}

/// The log: closed segments, then the active one that appends go to.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; the last one is the active segment.
    segments: Vec<Segment>,
    active: File,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, cutting a torn tail off the newest segment.
    /// `on_record` sees every valid record (index and payload), oldest first: one pass both
    /// checks the log and lets the caller index it.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        mut on_record: impl FnMut(u64, &[u8]),
    ) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                firsts.push((first, path));
            }
        }
        firsts.sort();
        let count = firsts.len();
        let mut segments = Vec::with_capacity(count.max(1));
        for (i, (first, path)) in firsts.into_iter().enumerate() {
            let newest = i + 1 == count;
            let scan = scan(&path, newest, &mut on_record)?;
            if scan.valid_bytes < scan.file_bytes {
                // Most likely a write torn by a crash, never acknowledged. Should it be a
                // damaged record with acknowledged ones after it, the bytes are kept aside
                // for recovery rather than deleted.
                let kept = keep_torn_tail(&path, scan.valid_bytes)?;
                tracing::warn!(
                    path = %path.display(),
                    cut = scan.file_bytes - scan.valid_bytes,
                    kept = %kept.display(),
                    "cutting a torn write off the log"
                );
                cut_file(&path, scan.valid_bytes)?;
            }
            segments.push(Segment {
                path,
                first,
                records: scan.records,
                bytes: scan.valid_bytes,
            });
        }
        if segments.is_empty() {
            segments.push(Segment {
                path: segment_path(dir, 0),
                first: 0,
                records: Vec::new(),
                bytes: 0,
            });
        }
        let active = open_append(&segments[segments.len() - 1].path)?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            segments,
            active,
        })
    }

    fn active_segment(&self) -> &Segment {
        self.segments
            .last()
            .expect("the log always has an active segment")
    }

    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("the log always has an active segment")
    }

    /// The index of the last record, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last)
    }

    /// The index of the first record, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.segments
            .iter()
            .find_map(|s| s.records.first().map(|r| r.0))
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Bytes of the records after `index` (all of them for `None`): what a purge through
    /// `index` has not released yet, as a segment is deleted only once all of it is purged.
    pub fn bytes_after(&self, index: Option<u64>) -> u64 {
        let Some(index) = index else {
            return self.bytes();
        };
        self.segments
            .iter()
            .map(|s| {
                let first_kept = s.records.partition_point(|r| r.0 <= index);
                s.records.get(first_kept).map_or(0, |r| s.bytes - r.1)
            })
            .sum()
    }

    /// Appends records (indices strictly increasing, above [`Wal::last_index`]) and fsyncs once:
    /// when it returns, they survive a crash.
    pub fn append<P: AsRef<[u8]>>(&mut self, records: &[(u64, P)]) -> Result<()> {
        let mut last = self.last_index();
        for (index, payload) in records {
            if let Some(last) = last
                && *index <= last
            {
                return Err(WalError::IndexNotIncreasing {
                    index: *index,
                    last,
                });
            }
            if payload.as_ref().len() > MAX_RECORD_BYTES {
                return Err(WalError::RecordTooLarge {
                    bytes: payload.as_ref().len(),
                });
            }
            last = Some(*index);
        }
        let Some((first, _)) = records.first() else {
            return Ok(());
        };
        let active = self.active_segment();
        if active.bytes >= self.segment_bytes || (active.bytes == 0 && *first != active.first) {
            self.roll(*first)?;
        }
        let size = records.iter().map(|r| HEADER + r.1.as_ref().len()).sum();
        let mut out = Vec::with_capacity(size);
        let base = self.active_segment().bytes;
        let mut offsets = Vec::with_capacity(records.len());
        for (index, payload) in records {
            let payload = payload.as_ref();
            offsets.push((*index, base + out.len() as u64));
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&checksum(*index, payload).to_le_bytes());
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(payload);
        }
        let written = self
            .active
            .write_all(&out)
            .and_then(|()| self.active.sync_data());
        if let Err(e) = written {
            // Cut what part of the batch reached the file, so later records do not follow a
            // torn one (which would read as corruption in the middle of the log).
            let _ = self.active.set_len(base);
            return Err(io(&self.active_segment().path)(e));
        }
        let active = self.active_segment_mut();
        active.bytes += out.len() as u64;
        active.records.extend(offsets);
        Ok(())
    }

    /// The payload of the record at `index`, if the log holds it.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let Some(segment) = self
            .segments
            .iter()
            .rev()
            .find(|s| s.records.first().is_some_and(|r| r.0 <= index))
        else {
            return Ok(None);
        };
        let Some(offset) = segment.offset_of(index) else {
            return Ok(None);
        };
        let path = &segment.path;
        let file = File::open(path).map_err(io(path))?;
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, offset).map_err(io(path))?;
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let mut payload = vec![0u8; len.min(MAX_RECORD_BYTES)];
        file.read_exact_at(&mut payload, offset + HEADER as u64)
            .map_err(io(path))?;
        if checksum(index, &payload) != crc {
            return Err(WalError::Corrupt {
                path: path.clone(),
                offset,
                reason: "checksum mismatch".into(),
            });
        }
        Ok(Some(payload))
    }

    /// Hands records with an index of `from` or more to `f`, oldest first, until `f` returns
    /// `false`.
    pub fn read_from(&self, from: u64, mut f: impl FnMut(u64, Vec<u8>) -> bool) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        for segment in &self.segments {
            // Straight to the first record at or after `from`, by the offset index.
            let first = segment.records.partition_point(|r| r.0 < from);
            let Some(&(_, offset)) = segment.records.get(first) else {
                continue;
            };
            let path = &segment.path;
            let mut file = File::open(path).map_err(io(path))?;
            file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
            let mut reader = Records::new(BufReader::with_capacity(1 << 20, file), path.clone());
            reader.offset = offset;
            while reader.offset < segment.bytes
                && let Some((index, payload)) = reader.next_record()?
            {
                if index >= from && !f(index, payload) {
                    return Ok(());
                }
            }
            if let Some(reason) = reader.stopped {
                return Err(WalError::Corrupt {
                    path: path.clone(),
                    offset: reader.offset,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Deletes the segments whose records all lie at or below `index`. Records at or below it
    /// may remain in a segment that also holds later ones; readers skip them.
    pub fn truncate_through(&mut self, index: u64) -> Result<()> {
        if let Some(last) = self.active_segment().last()
            && last <= index
        {
            self.roll(last + 1)?;
        }
        let active = self.segments.len() - 1;
        let mut gone = Vec::new();
        let mut i = 0;
        self.segments.retain(|s| {
            let keep = i == active || s.last().is_some_and(|last| last > index);
            if !keep {
                gone.push(s.path.clone());
            }
            i += 1;
            keep
        });
        for path in gone {
            fs::remove_file(&path).map_err(io(&path))?;
        }
        sync_dir(&self.dir)
    }

    /// Deletes every record with an index of `index` or more (a Raft leader overwriting a
    /// follower's uncommitted entries); the log continues from the record before.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        if self.last_index().is_none_or(|last| last < index) {
            return Ok(());
        }
        // Whole segments that start at or after `index` go, newest first.
        while self.active_segment().first >= index
            || self
                .active_segment()
                .records
                .first()
                .is_some_and(|r| r.0 >= index)
        {
            let path = self.active_segment().path.clone();
            fs::remove_file(&path).map_err(io(&path))?;
            self.segments.pop();
            if self.segments.is_empty() {
                let path = segment_path(&self.dir, index);
                self.active = open_append(&path)?;
                self.segments.push(Segment {
                    path,
                    first: index,
                    records: Vec::new(),
                    bytes: 0,
                });
                return sync_dir(&self.dir);
            }
            self.active = open_append(&self.active_segment().path)?;
        }
        // The active segment holds `index`: cut it before that record.
        let active = self.active_segment_mut();
        let keep = active.records.partition_point(|r| r.0 < index);
        let offset = active.records.get(keep).map_or(active.bytes, |r| r.1);
        active.records.truncate(keep);
        active.bytes = offset;
        let path = active.path.clone();
        cut_file(&path, offset)?;
        self.active = open_append(&path)?;
        sync_dir(&self.dir)
    }

    /// Starts a new segment whose first record will be `first`. An empty active segment is
    /// replaced rather than kept.
    fn roll(&mut self, first: u64) -> Result<()> {
        if first == self.active_segment().first {
            return Ok(());
        }
        let path = segment_path(&self.dir, first);
        let file = open_append(&path)?;
        drop(std::mem::replace(&mut self.active, file));
        if self.active_segment().bytes == 0 {
            let old = self.segments.pop().expect("active segment");
            fs::remove_file(&old.path).map_err(io(&old.path))?;
        }
        self.segments.push(Segment {
            path,
            first,
            records: Vec::new(),
            bytes: 0,
        });
        sync_dir(&self.dir)
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))
}

/// Copies a segment's bytes from `from` on into `<segment>.torn-<n>`, durably; returns its
/// path. Such files are not segments: the log ignores them.
fn keep_torn_tail(path: &Path, from: u64) -> Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let mut n = 0;
    let kept = loop {
        let candidate = path.with_extension(format!("log.torn-{n}"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    let mut source = File::open(path).map_err(io(path))?;
    source.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut out = File::create(&kept).map_err(io(&kept))?;
    std::io::copy(&mut source, &mut out).map_err(io(&kept))?;
    out.sync_all().map_err(io(&kept))?;
    Ok(kept)
}

/// Truncates a file to `len` bytes, durably.
fn cut_file(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(len).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

struct Scan {
    records: Vec<(u64, u64)>,
    valid_bytes: u64,
    file_bytes: u64,
}

/// Reads a segment to its end; `tail_may_tear` allows a bad record at the end (the newest
/// segment), otherwise a bad record is corruption.
fn scan(path: &Path, tail_may_tear: bool, on_record: &mut impl FnMut(u64, &[u8])) -> Result<Scan> {
    let file = File::open(path).map_err(io(path))?;
    let file_bytes = file.metadata().map_err(io(path))?.len();
    let mut reader = Records::new(BufReader::with_capacity(1 << 20, file), path.to_owned());
    let mut records = Vec::new();
    loop {
        let offset = reader.offset;
        let Some((index, payload)) = reader.next_record()? else {
            break;
        };
        on_record(index, &payload);
        records.push((index, offset));
    }
    if let Some(reason) = reader.stopped
        && !tail_may_tear
    {
        return Err(WalError::Corrupt {
            path: path.to_owned(),
            offset: reader.offset,
            reason,
        });
    }
    Ok(Scan {
        records,
        valid_bytes: reader.offset,
        file_bytes,
    })
}

/// Reads records one by one; stops (with `stopped` set) at the first one that is short or
/// fails its checksum.
struct Records<R> {
    reader: R,
    path: PathBuf,
    offset: u64,
    last: Option<u64>,
    stopped: Option<String>,
}

impl<R: Read> Records<R> {
    fn new(reader: R, path: PathBuf) -> Self {
        Self {
            reader,
            path,
            offset: 0,
            last: None,
            stopped: None,
        }
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut header = [0u8; HEADER];
        match read_full(&mut self.reader, &mut header).map_err(io(&self.path))? {
            0 => return Ok(None),
            n if n < HEADER => return self.stop("short record header"),
            _ => {}
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if len > MAX_RECORD_BYTES {
            return self.stop("record length over the limit");
        }
        let mut payload = vec![0u8; len];
        if read_full(&mut self.reader, &mut payload).map_err(io(&self.path))? < len {
            return self.stop("short record payload");
        }
        if checksum(index, &payload) != crc {
            return self.stop("checksum mismatch");
        }
        if self.last.is_some_and(|l| index <= l) {
            return self.stop("record index does not increase");
        }
        self.last = Some(index);
        self.offset += (HEADER + len) as u64;
        Ok(Some((index, payload)))
    }

    fn stop<T>(&mut self, reason: &str) -> Result<Option<T>> {
        self.stopped = Some(reason.to_owned());
        Ok(None)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(wal: &Wal, from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        wal.read_from(from, |i, p| {
            out.push((i, p));
            true
        })
        .expect("read");
        out
    }

    fn open(dir: &Path, segment_bytes: u64) -> Result<Wal> {
        Wal::open(dir, segment_bytes, |_, _| {})
    }

    #[test]
    fn appended_records_replay_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, &b"one"[..]), (2, &b"two"[..])])
            .expect("append");
        wal.append(&[(3, &b"three"[..])]).expect("append");
        drop(wal);
        let wal = open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(wal.last_index(), Some(3));
        assert_eq!(
            records(&wal, 2),
            vec![(2, b"two".to_vec()), (3, b"three".to_vec())]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, &b"kept"[..]), (2, &b"torn record"[..])])
            .expect("append");
        let path = segment_path(dir.path(), 1);
        let len = fs::metadata(&path).expect("meta").len();
        drop(wal);
        // A crash in the middle of the second record's write.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(len - 4).expect("cut");
        let mut wal = open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(wal.last_index(), Some(1));
        wal.append(&[(2, &b"rewritten"[..])]).expect("append");
        let wal = open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(
            records(&wal, 0),
            vec![(1, b"kept".to_vec()), (2, b"rewritten".to_vec())]
        );
    }

    #[test]
    fn a_flipped_bit_in_an_older_segment_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 10).expect("open");
        wal.append(&[(1, &b"first segment"[..])]).expect("append");
        wal.append(&[(2, &b"second segment"[..])]).expect("append");
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        let err = open(dir.path(), 10).expect_err("corrupt");
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_bad_checksum_at_the_tail_is_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, &b"kept"[..]), (2, &b"garbled"[..])])
            .expect("append");
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        let wal = open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(records(&wal, 0), vec![(1, b"kept".to_vec())]);
        let kept = fs::read(path.with_extension("log.torn-0")).expect("the cut bytes are kept");
        assert_eq!(kept.len(), HEADER + b"garbled".len(), "{kept:?}");
    }

    #[test]
    fn flushed_segments_are_deleted_and_numbering_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 8).expect("open");
        for i in 1..=5u64 {
            wal.append(&[(i, format!("write {i}").as_bytes())])
                .expect("append");
        }
        let before = wal.bytes();
        assert_eq!(wal.bytes_after(None), before);
        assert!(wal.bytes_after(Some(3)) < before);
        assert_eq!(wal.bytes_after(Some(5)), 0);
        wal.truncate_through(3).expect("truncate");
        assert!(wal.bytes() < before);
        assert_eq!(
            records(&wal, 0).iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![4, 5]
        );
        wal.truncate_through(5).expect("truncate all");
        assert_eq!(wal.bytes(), 0);
        drop(wal);
        let mut wal = open(dir.path(), 8).expect("reopen");
        assert_eq!(wal.last_index(), None);
        wal.append(&[(6, &b"six"[..])]).expect("append");
        assert!(matches!(
            wal.append(&[(5, &b"again"[..])]),
            Err(WalError::IndexNotIncreasing { .. })
        ));
        assert_eq!(records(&wal, 0), vec![(6, b"six".to_vec())]);
    }

    #[test]
    fn truncating_from_an_index_drops_it_and_everything_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path(), 40).expect("open");
        for i in 0..=9u64 {
            wal.append(&[(i, format!("entry {i}").as_bytes())])
                .expect("append");
        }
        wal.truncate_from(7)
            .expect("truncate in the active segment");
        assert_eq!(wal.last_index(), Some(6));
        wal.truncate_from(2).expect("truncate across segments");
        assert_eq!(wal.last_index(), Some(1));
        wal.append(&[(2, &b"new two"[..])])
            .expect("append after the cut");
        drop(wal);
        let wal = open(dir.path(), 40).expect("reopen");
        assert_eq!(
            records(&wal, 0),
            vec![
                (0, b"entry 0".to_vec()),
                (1, b"entry 1".to_vec()),
                (2, b"new two".to_vec())
            ]
        );
        let mut wal = wal;
        wal.truncate_from(0).expect("truncate everything");
        assert_eq!(wal.last_index(), None);
        assert_eq!(records(&wal, 0), vec![]);
    }
}
