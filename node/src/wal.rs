//! The write-ahead log: a write is appended here and fsynced before it is applied to the
//! buffer and acknowledged, and replayed from here after a restart. Each record carries its
//! index (the write's sequence number) and a checksum.
//!
//! ```text
//!  wal/<first index, 20 digits>.log    segments, rolled past `segment_bytes`
//!  record = [payload length u32 LE][crc32(index ‖ payload) u32 LE][index u64 LE][payload]
//! ```
//!
//! A short record or a bad checksum at the end of the newest segment is a write torn by a crash
//! (it was never acknowledged): the segment is cut there. Anywhere else it is corruption and
//! opening fails rather than silently dropping acknowledged writes. Segments whose records are
//! all flushed into blocks are deleted.

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

/// A closed segment.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last: u64,
    bytes: u64,
}

#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    closed: Vec<Segment>,
    active: File,
    active_path: PathBuf,
    active_first: u64,
    active_bytes: u64,
    /// Index of the last record, or of the point the log starts after when empty.
    last: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, cutting a torn tail off the newest segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self> {
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
        let mut closed = Vec::new();
        let mut last = 0;
        let newest = firsts.pop();
        for (first, path) in firsts {
            let scan = scan(&path, false)?;
            last = scan.last.unwrap_or(first.saturating_sub(1)).max(last);
            closed.push(Segment {
                path,
                last,
                bytes: scan.valid_bytes,
            });
        }
        let (active_path, active_first) = match newest {
            Some((first, path)) => {
                let scan = scan(&path, true)?;
                if scan.valid_bytes < scan.file_bytes {
                    tracing::warn!(
                        path = %path.display(),
                        cut = scan.file_bytes - scan.valid_bytes,
                        "cutting a torn write off the log"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(&path))?;
                    file.set_len(scan.valid_bytes).map_err(io(&path))?;
                    file.sync_all().map_err(io(&path))?;
                }
                last = scan.last.unwrap_or(first.saturating_sub(1)).max(last);
                (path, first)
            }
            None => (segment_path(dir, 1), 1),
        };
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(io(&active_path))?;
        let active_bytes = active.metadata().map_err(io(&active_path))?.len();
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            closed,
            active,
            active_path,
            active_first,
            active_bytes,
            last,
        })
    }

    /// The index of the last record (or what the log was started after).
    pub fn last_index(&self) -> u64 {
        self.last
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.active_bytes
    }

    /// Appends records (indices strictly increasing, above [`Wal::last_index`]) and fsyncs once:
    /// when it returns, they survive a crash.
    pub fn append(&mut self, records: &[(u64, &[u8])]) -> Result<()> {
        let mut last = self.last;
        for &(index, payload) in records {
            if index <= last {
                return Err(WalError::IndexNotIncreasing { index, last });
            }
            if payload.len() > MAX_RECORD_BYTES {
                return Err(WalError::RecordTooLarge {
                    bytes: payload.len(),
                });
            }
            last = index;
        }
        let Some(&(first, _)) = records.first() else {
            return Ok(());
        };
        if self.active_bytes >= self.segment_bytes {
            self.roll(first)?;
        }
        let mut out = Vec::with_capacity(records.iter().map(|r| HEADER + r.1.len()).sum());
        for &(index, payload) in records {
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&checksum(index, payload).to_le_bytes());
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
            let _ = self.active.set_len(self.active_bytes);
            return Err(io(&self.active_path)(e));
        }
        self.active_bytes += out.len() as u64;
        self.last = last;
        Ok(())
    }

    /// Continues numbering after `index` (when blocks already hold writes up to it).
    pub fn skip_to(&mut self, index: u64) {
        self.last = self.last.max(index);
    }

    /// Hands every record with an index above `after` to `f`, oldest first.
    pub fn replay(&self, after: u64, mut f: impl FnMut(u64, Vec<u8>)) -> Result<()> {
        let segments = self
            .closed
            .iter()
            .map(|s| (&s.path, s.last))
            .chain([(&self.active_path, self.last)]);
        for (path, last) in segments {
            if last <= after {
                continue;
            }
            let file = File::open(path).map_err(io(path))?;
            let mut reader = Records::new(BufReader::with_capacity(1 << 20, file), path.clone());
            while let Some((index, payload)) = reader.next_record()? {
                if index > after {
                    f(index, payload);
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

    /// Deletes the segments whose records all lie at or below `index` (they are in blocks).
    pub fn truncate_through(&mut self, index: u64) -> Result<()> {
        if self.active_bytes > 0 && self.last <= index {
            self.roll(self.last + 1)?;
        }
        let (gone, kept): (Vec<Segment>, Vec<Segment>) =
            self.closed.drain(..).partition(|s| s.last <= index);
        self.closed = kept;
        for segment in gone {
            fs::remove_file(&segment.path).map_err(io(&segment.path))?;
        }
        sync_dir(&self.dir)
    }

    /// Starts a new segment whose first record will be `first`. An empty active segment is
    /// replaced rather than kept.
    fn roll(&mut self, first: u64) -> Result<()> {
        if first == self.active_first {
            return Ok(());
        }
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        drop(std::mem::replace(&mut self.active, file));
        let old_path = std::mem::replace(&mut self.active_path, path);
        if self.active_bytes == 0 {
            fs::remove_file(&old_path).map_err(io(&old_path))?;
        } else {
            self.closed.push(Segment {
                path: old_path,
                last: self.last,
                bytes: self.active_bytes,
            });
        }
        self.active_first = first;
        self.active_bytes = 0;
        sync_dir(&self.dir)
    }
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
    last: Option<u64>,
    valid_bytes: u64,
    file_bytes: u64,
}

/// Reads a segment to its end; `tail_may_tear` allows a bad record at the end (the newest
/// segment), otherwise a bad record is corruption.
fn scan(path: &Path, tail_may_tear: bool) -> Result<Scan> {
    let file = File::open(path).map_err(io(path))?;
    let file_bytes = file.metadata().map_err(io(path))?.len();
    let mut reader = Records::new(BufReader::with_capacity(1 << 20, file), path.to_owned());
    let mut last = None;
    while let Some((index, _)) = reader.next_record()? {
        last = Some(index);
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
        last,
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

    fn records(wal: &Wal, after: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        wal.replay(after, |i, p| out.push((i, p))).expect("replay");
        out
    }

    #[test]
    fn appended_records_replay_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, b"one"), (2, b"two")]).expect("append");
        wal.append(&[(3, b"three")]).expect("append");
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(wal.last_index(), 3);
        assert_eq!(
            records(&wal, 1),
            vec![(2, b"two".to_vec()), (3, b"three".to_vec())]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, b"kept"), (2, b"torn record")])
            .expect("append");
        let path = segment_path(dir.path(), 1);
        let len = fs::metadata(&path).expect("meta").len();
        drop(wal);
        // A crash in the middle of the second record's write.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(len - 4).expect("cut");
        let mut wal = Wal::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(wal.last_index(), 1);
        wal.append(&[(2, b"rewritten")]).expect("append");
        let wal = Wal::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(
            records(&wal, 0),
            vec![(1, b"kept".to_vec()), (2, b"rewritten".to_vec())]
        );
    }

    #[test]
    fn a_flipped_bit_in_an_older_segment_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 10).expect("open");
        wal.append(&[(1, b"first segment")]).expect("append");
        wal.append(&[(2, b"second segment")]).expect("append");
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        let err = Wal::open(dir.path(), 10).expect_err("corrupt");
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_bad_checksum_at_the_tail_is_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 1 << 20).expect("open");
        wal.append(&[(1, b"kept"), (2, b"garbled")])
            .expect("append");
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        let wal = Wal::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(records(&wal, 0), vec![(1, b"kept".to_vec())]);
    }

    #[test]
    fn flushed_segments_are_deleted_and_numbering_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 8).expect("open");
        for i in 1..=5u64 {
            wal.append(&[(i, format!("write {i}").as_bytes())])
                .expect("append");
        }
        let before = wal.bytes();
        wal.truncate_through(3).expect("truncate");
        assert!(wal.bytes() < before);
        assert_eq!(
            records(&wal, 0).iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![4, 5]
        );
        wal.truncate_through(5).expect("truncate all");
        assert_eq!(wal.bytes(), 0);
        drop(wal);
        let mut wal = Wal::open(dir.path(), 8).expect("reopen");
        wal.skip_to(5);
        assert!(matches!(
            wal.append(&[(5, b"again")]),
            Err(WalError::IndexNotIncreasing { .. })
        ));
        wal.append(&[(6, b"six")]).expect("append");
        assert_eq!(records(&wal, 5), vec![(6, b"six".to_vec())]);
    }
}
