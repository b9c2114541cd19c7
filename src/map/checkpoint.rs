//! Checkpoint and resume of load-balanced maps: each finished chunk's results are appended to
//! a log on disk, and a rerun with the same log skips every item found there.
//!
//! # The log
//! An 8-byte magic (`PVCKPT01`), then records. A record is `len: u32 LE`, `crc32(payload): u32
//! LE`, `payload` ([postcard]). The first record is the [`Header`]: the number of items, a
//! fingerprint of the input (crc32 and byte length of the postcard bytes of every item), and the
//! item and result type names. Every later record holds the results of one finished chunk as
//! runs `(first index, results)` of consecutive indices.
//!
//! **Codec: postcard.** Compact (varints, no field names), `serde`-based so any `Serialize`
//! result works, stable wire format (1.x), already used by the cluster's maps, and exact for
//! floats (their bits are stored), which makes a resumed result bitwise identical.
//!
//! **Flush policy.** Each chunk's record is handed to the OS with one `write` as soon as the
//! chunk finishes (it survives the death of the process — SIGKILL, an abort, a panic that kills
//! it); the file is `fsync`ed at most every [`Checkpoint::sync_every`] (default 1 s) and when
//! the map ends, which bounds what a crash of the machine can lose (`Duration::MAX`: never).
//!
//! **Reading.** A record cut short at the end of the file (a crash mid-write), or a last record
//! whose checksum fails, is a *torn tail*: it is cut off and the map goes on from there. A bad
//! record with data after it, a record that does not decode, an index out of range or written
//! twice is [`CheckpointError::Corrupt`]; a header for another input, length or type is refused
//! with its own error — a log is never merged into a map it was not written for. (A damaged
//! *length* field that points past the end of the file cannot be told from a torn tail: the log
//! is cut there and the results after it are computed again — lost work, never a wrong result.)
//!
//! # Pipeline
//! The map runs through the one pipeline ([`super::run::run`]) over the items *not* in the log
//! (a remapped input), into a sink that writes each result into its slot of the full output and
//! appends the chunk's record at the chunk completion point ([`Sink::chunk_done`]).
//!
//! # Cluster maps
//! The cluster's load-balanced maps (feature `mpi`: `FarmView::checkpoint`,
//! `ClusterView::checkpoint`, in `src/cluster/checkpoint.rs`) write this same log **on the
//! root** only, through `RootLog`: the root reads it, hands out only the missing items, and
//! appends each chunk's record as its results come back to the root. A log resumes in any of
//! these maps, local or across ranks.

use super::body::{NoState, Report};
use super::input::{MapInput, SliceInput};
use super::run::{Spec, run};
use super::sink::{Sink, VecSink, alloc_output, collect};
use crate::error::MapError;
use crate::views::LoadBalancedView;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"PVCKPT01";
const FRAME: usize = 8;
/// Items per block when fingerprinting the input (blocks are hashed in parallel).
const FP_BLOCK: usize = 4096;

/// Why a checkpointed map could not run or resume.
///
/// # Examples
/// ```
/// use parview::{CheckpointError, Pool};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let path = std::env::temp_dir().join(format!("parview-doc-err-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let lb = pool.load_balanced();
/// lb.checkpoint(&path).map(&[1u32, 2, 3], |x| x * 2).unwrap();
/// // The same log for a longer input is refused, never merged.
/// let e = lb.checkpoint(&path).map(&[1u32, 2, 3, 4], |x| x * 2).unwrap_err();
/// assert!(matches!(e, CheckpointError::Length { found: 3, expected: 4, .. }));
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError<E = Infallible> {
    /// Reading, writing or syncing the log failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a parview checkpoint (or of an unknown version).
    #[error("checkpoint {path}: not a parview checkpoint log (bad magic); not touched")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// The log was written for a map over another number of items.
    #[error(
        "checkpoint {path} was written for a map over {found} items, this map has {expected}; remove it or use another path"
    )]
    Length {
        /// The log.
        path: PathBuf,
        /// Items in the log's map.
        found: u64,
        /// Items in this map.
        expected: u64,
    },
    /// The log was written for other input items (same length, another fingerprint).
    #[error(
        "checkpoint {path} was written for another input (fingerprint {found:016x}, this input's is {expected:016x}); remove it or use another path"
    )]
    Input {
        /// The log.
        path: PathBuf,
        /// The log's input fingerprint.
        found: u64,
        /// This input's fingerprint.
        expected: u64,
    },
    /// The log holds items or results of another type.
    #[error(
        "checkpoint {path} holds {what} of type `{found}`, this map's are `{expected}`; remove it or use another path"
    )]
    Type {
        /// The log.
        path: PathBuf,
        /// `"items"` or `"results"`.
        what: &'static str,
        /// The log's type name.
        found: String,
        /// This map's type name.
        expected: String,
    },
    /// A record in the middle of the log is damaged (a torn *tail* is cut off instead).
    #[error("checkpoint {path} is corrupt at byte {offset}: {reason}; not modified")]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An input item or a result could not be serialized (its `Serialize` failed or panicked).
    #[error("checkpoint: cannot serialize {what}: {message}")]
    Encode {
        /// What was being serialized.
        what: String,
        /// The serializer's error or the panic message.
        message: String,
    },
    /// The map itself failed (an `Err`, a panic) or was stopped: every result that finished
    /// before is in the log, so a rerun resumes from there.
    #[error("checkpointed map: {0}")]
    Map(MapError<E>),
}

/// A [`LoadBalancedView`] whose maps are checkpointed to an append-only log at `path`
/// ([`LoadBalancedView::checkpoint`]). A rerun with the same path skips every item whose result
/// is in the log and returns a result bitwise identical to an uninterrupted run, whatever the
/// pool size or schedule of either run.
///
/// One record per chunk: a crash loses at most the chunks in flight (one per participant), so
/// pick the schedule for the granularity you want — `Dynamic(c)`, `Guided(m)` or the default
/// `Adaptive` write as chunks finish; `Static` writes one record per engine block, only at
/// the end of each block.
///
/// Inputs are slices of `Serialize` items: the log stores a fingerprint of their postcard bytes
/// (crc32 and length; it catches accidents — a changed, added or removed item — not inputs
/// crafted to collide) and refuses another input. Results are `Serialize +
/// DeserializeOwned`. One log per map: two maps (or processes) must not use the same path at
/// the same time. A finished map's log stays (a rerun then reads every result from it); remove
/// the file to start over. Type names (`std::any::type_name`) are part of the header, so a log
/// may be refused after a compiler upgrade renames a type.
///
/// The cluster's maps (feature `mpi`) checkpoint the same way, on the root:
/// `parview::cluster::FarmCheckpoint` and `parview::cluster::ClusterCheckpoint` write this log
/// format, so a log from this map resumes in a cluster map of the same items and types (and the
/// other way round), with any number of ranks.
///
/// # Examples
/// Recipe "abort, fix, resume": a long map stops — here on a bad item (an `Err` stops it; a
/// panic lets the other items finish first), just as well by Ctrl-C, a kill or a lost node;
/// the results that finished are in the log, the bug is fixed, and the rerun computes only what
/// is missing, with any pool size and schedule.
/// ```
/// use parview::{CheckpointError, MapError, Pool, Schedule};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let lb = pool.load_balanced().schedule(Schedule::Dynamic(4));
/// let path = std::env::temp_dir().join(format!("parview-doc-recipe-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let xs: Vec<u32> = (0..100).collect();
///
/// // 1. The first run meets a bad item and aborts (an `Err` stops the map).
/// let buggy = |&x: &u32| if x == 60 { Err("division by zero") } else { Ok(1.0 / (x + 1) as f64) };
/// let e = lb.checkpoint(&path).try_map(&xs, buggy).unwrap_err();
/// assert!(matches!(e, CheckpointError::Map(MapError::Failed { index: 60, .. })));
///
/// // 2. Fixed, then resumed: only the items missing from the log run again.
/// let ran = AtomicUsize::new(0);
/// let fixed = |&x: &u32| { ran.fetch_add(1, Ordering::Relaxed); Ok::<_, &str>(1.0 / (x + 1) as f64) };
/// let v = lb.checkpoint(&path).try_map(&xs, fixed).unwrap();
/// assert!(ran.load(Ordering::Relaxed) < 100);
/// let clean: Vec<f64> = xs.iter().map(|&x| 1.0 / (x + 1) as f64).collect();
/// assert_eq!(v, clean);
/// std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint<'p> {
    view: LoadBalancedView<'p>,
    path: PathBuf,
    sync_every: Duration,
    retries: usize,
}

impl<'p> Checkpoint<'p> {
    pub(crate) fn new(view: LoadBalancedView<'p>, path: PathBuf) -> Self {
        Checkpoint {
            view,
            path,
            sync_every: Duration::from_secs(1),
            retries: 0,
        }
    }

    /// `fsync` the log at most this often (default 1 s) while the map runs, and when it ends.
    /// Records are written to the OS after every chunk regardless, so only a crash of the
    /// machine (not of the process) can lose up to this much work. `Duration::ZERO` syncs
    /// after every chunk; `Duration::MAX` never syncs (not even at the end: the OS writes the
    /// log back when it likes, which a process crash does not affect).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt").sync_every(Duration::from_millis(200));
    /// assert_eq!(ck.get_sync_every(), Duration::from_millis(200));
    /// ```
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every;
        self
    }

    /// Run an item that panics again, up to `n` times, before it counts as failed (as
    /// [`LoadBalancedView::retries`]; attempts are not logged, only the result that finished).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-retry-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let failed = AtomicBool::new(false);
    /// let v = pool.load_balanced().checkpoint(&path).retries(1).map(&[1u32, 2, 3], |&x| {
    ///     if x == 2 && !failed.swap(true, Ordering::Relaxed) { panic!("flaky"); }
    ///     x * 10
    /// });
    /// assert_eq!(v.unwrap(), vec![10, 20, 30]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// The sync interval ([`sync_every`](Self::sync_every)).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.get_sync_every(), std::time::Duration::from_secs(1));
    /// ```
    pub fn get_sync_every(&self) -> Duration {
        self.sync_every
    }

    /// The log's path.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.path(), std::path::Path::new("run.ckpt"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpointed ordered map: results in input order, each finished chunk appended to the
    /// log; items already in the log are not run again. A panicking item does not unwind: it is
    /// [`CheckpointError::Map`] once every other item ran (and was logged).
    ///
    /// # Errors
    /// [`CheckpointError`]: the log cannot be used (I/O, another map's log, corrupt), a value
    /// cannot be serialized, or the map failed ([`CheckpointError::Map`]).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-map-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let xs: Vec<u64> = (0..1000).collect();
    /// let a = pool.load_balanced().checkpoint(&path).map(&xs, |x| x * x).unwrap();
    /// let b = pool.load_balanced().checkpoint(&path).map(&xs, |_| -> u64 { unreachable!() }).unwrap();
    /// assert_eq!(a, b); // the second run read every result from the log
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn map<T, R, F>(&self, input: &[T], f: F) -> Result<Vec<R>, CheckpointError>
    where
        T: Serialize + Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&T) -> R + Sync,
    {
        self.try_map(input, |x| Ok::<R, Infallible>(f(x)))
    }

    /// Checkpointed fallible map: as [`map`](Self::map); the first `Err` (by index) stops the
    /// map — no new chunk starts — and comes back as [`CheckpointError::Map`]. Everything that
    /// finished is in the log for the rerun.
    ///
    /// # Errors
    /// As [`map`](Self::map), and [`MapError::Failed`] inside [`CheckpointError::Map`].
    ///
    /// # Examples
    /// ```
    /// use parview::{CheckpointError, MapError};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-try-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let r = pool.load_balanced().checkpoint(&path).try_map(&[1u8, 0], |&x| x.checked_sub(1).ok_or("zero"));
    /// assert!(matches!(r, Err(CheckpointError::Map(MapError::Failed { index: 1, .. }))));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn try_map<T, R, E, F>(&self, input: &[T], f: F) -> Result<Vec<R>, CheckpointError<E>>
    where
        T: Serialize + Sync,
        R: Serialize + DeserializeOwned + Send,
        E: Send,
        F: Fn(&T) -> Result<R, E> + Sync,
    {
        let view = &self.view;
        view.schedule
            .validate()
            .map_err(|e| CheckpointError::Map(e.into()))?;
        let n = input.len();
        let header = Header {
            items: n as u64,
            input: fingerprint(view, input)?,
            item_type: std::any::type_name::<T>().to_string(),
            result_type: std::any::type_name::<R>().to_string(),
        };
        let mut out = alloc_output::<R, E>(n).map_err(CheckpointError::Map)?;
        let base = VecSink(out.as_mut_ptr());
        let mut filled = vec![false; n];
        let opened = open_log::<R, E>(&self.path, &header, &mut |i, r| {
            // SAFETY: `open_log` hands each index `i < n` at most once (a second one is
            // `Corrupt`), and nothing else writes `out` yet.
            unsafe { base.put(i, r) };
            filled[i] = true;
        });
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                let rep = Report::<E> {
                    holes: holes_of(&filled),
                    ..Report::default()
                };
                // SAFETY: exactly the slots marked in `filled` were written; `collect` drops them.
                let _ = unsafe { collect(out, n, rep) };
                return Err(e);
            }
        };
        let todo: Vec<usize> = (0..n).filter(|&i| !filled[i]).collect();
        drop(filled);
        let log = Log {
            path: &self.path,
            state: Mutex::new(LogState {
                file,
                last_sync: Instant::now(),
                error: None,
            }),
            sync_every: self.sync_every,
        };
        let mut rep = if todo.is_empty() {
            Report::default()
        } else {
            let written: Vec<AtomicBool> = todo.iter().map(|_| AtomicBool::new(false)).collect();
            let sink = LogSink {
                out: base,
                todo: &todo,
                written: &written,
                log: &log,
                _r: std::marker::PhantomData,
            };
            let input = Remapped {
                items: SliceInput(input),
                todo: &todo,
            };
            let g = super::retry::retrying(self.retries, view.pool.reg.clone(), None, f);
            let mut rep = run(
                &view.pool.reg,
                &Spec::shared(view.schedule),
                input,
                NoState,
                |_: &mut (), x| g(x),
                sink,
            );
            // The pipeline worked in "todo" index space: back to the input's indices (`todo` is
            // increasing, so the lowest failing index stays the lowest).
            rep.error = rep.error.map(|(k, e)| (todo[k], e));
            rep.panic = rep.panic.map(|(k, m)| (todo[k], m));
            let mut holes = Vec::new();
            for h in rep.holes.drain(..) {
                for k in h {
                    push_index(&mut holes, todo[k]);
                }
            }
            rep.holes = holes;
            rep.untaken.clear();
            rep
        };
        let log_error = log.finish();
        if let Some(e) = log_error {
            rep.stopped = true;
            // SAFETY: every participant has left; the slots outside `rep.holes` (now in input
            // indices) are exactly those read from the log or written by the sink.
            let _ = unsafe { collect(out, n, rep) };
            return Err(e);
        }
        // SAFETY: as above.
        unsafe { collect(out, n, rep) }.map_err(CheckpointError::Map)
    }
}

impl<'p> LoadBalancedView<'p> {
    /// This view's maps checkpointed to the append-only log at `path`: see [`Checkpoint`] (log
    /// format, flush policy, and the recipe "abort, fix, resume").
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let v = pool.load_balanced().checkpoint(&path).map(&[1.5f64, 2.5], |x| x * 2.0).unwrap();
    /// assert_eq!(v, vec![3.0, 5.0]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn checkpoint(&self, path: impl AsRef<Path>) -> Checkpoint<'p> {
        Checkpoint::new(self.clone(), path.as_ref().to_path_buf())
    }
}

/// Appends `i` to a list of ranges, extending the last one when contiguous.
fn push_index(v: &mut Vec<Range<usize>>, i: usize) {
    match v.last_mut() {
        Some(r) if r.end == i => r.end += 1,
        _ => v.push(i..i + 1),
    }
}

/// The unfilled slots as ranges.
fn holes_of(filled: &[bool]) -> Vec<Range<usize>> {
    let mut v = Vec::new();
    for (i, &f) in filled.iter().enumerate() {
        if !f {
            push_index(&mut v, i);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Fingerprint and header

/// The first record of a log.
#[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
struct Header {
    items: u64,
    /// crc32 of the input's postcard bytes (low 32 bits) and their length (high 32 bits, mod
    /// 2^32).
    input: u64,
    item_type: String,
    result_type: String,
}

/// Fingerprint of `input`: blocks of [`FP_BLOCK`] items hashed in parallel on the view's pool,
/// then combined in order (the same value for any pool size or schedule).
fn fingerprint<T: Serialize + Sync, E>(
    view: &LoadBalancedView<'_>,
    input: &[T],
) -> Result<u64, CheckpointError<E>> {
    let blocks = input.len().div_ceil(FP_BLOCK);
    let parts = view
        .view_pool()
        .schedule(crate::Schedule::Dynamic(1))
        .try_map(0..blocks, |b| {
            // The block's bytes in one buffer, hashed once: feeding the hasher value by value
            // (8 bytes at a time) cost 3x more.
            let end = input.len().min((b + 1) * FP_BLOCK);
            let mut buf = Vec::new();
            for (i, x) in input[b * FP_BLOCK..end].iter().enumerate() {
                buf = postcard::to_extend(x, buf)
                    .map_err(|e| format!("input item {}: {e}", b * FP_BLOCK + i))?;
            }
            Ok((crc32fast::hash(&buf), buf.len() as u64))
        });
    let parts = parts.map_err(|e| match e {
        MapError::Failed { error, .. } => CheckpointError::Encode {
            what: "the input".into(),
            message: error,
        },
        other => CheckpointError::Encode {
            what: "the input".into(),
            message: other.to_string(),
        },
    })?;
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    for (c, b) in parts {
        crc.update(&c.to_le_bytes());
        crc.update(&b.to_le_bytes());
        bytes = bytes.wrapping_add(b);
    }
    Ok(u64::from(crc.finalize()) | (bytes << 32))
}

/// `len, crc, payload` of `payload` (which starts with [`FRAME`] reserved bytes).
fn seal(mut buf: Vec<u8>) -> Vec<u8> {
    let len = (buf.len() - FRAME) as u32;
    let crc = crc32fast::hash(&buf[FRAME..]);
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Opens (or creates) the log at `path` for a map described by `header`: every result found is
/// handed to `found(index, result)`; a torn tail is cut off. Returns the file, positioned for
/// appending.
fn open_log<R: DeserializeOwned, E>(
    path: &Path,
    header: &Header,
    found: &mut dyn FnMut(usize, R),
) -> Result<File, CheckpointError<E>> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |offset: usize, reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;

    // A file shorter than magic + a whole header record, that starts like one, is a log whose
    // creation was torn: start it again.
    let fresh = |file: &mut File| -> Result<(), CheckpointError<E>> {
        file.set_len(0).map_err(io)?;
        let head =
            postcard::to_extend(header, vec![0u8; FRAME]).map_err(|e| CheckpointError::Encode {
                what: "the log header".into(),
                message: e.to_string(),
            })?;
        let mut buf = MAGIC.to_vec();
        buf.extend(seal(head));
        file.write_all(&buf).map_err(io)?;
        file.sync_data().map_err(io)
    };
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(&bytes) {
            fresh(&mut file)?;
            return Ok(file);
        }
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }

    let mut at = MAGIC.len();
    let mut first = true;
    let mut seen = vec![false; header.items as usize];
    while at < bytes.len() {
        let rest = bytes.len() - at;
        let torn = if rest < FRAME {
            true
        } else {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            if len > rest - FRAME {
                true
            } else {
                let payload = &bytes[at + FRAME..at + FRAME + len];
                if crc32fast::hash(payload) != crc {
                    if at + FRAME + len == bytes.len() {
                        true // the last record, partly persisted
                    } else {
                        return Err(corrupt(at, "checksum mismatch".into()));
                    }
                } else {
                    if first {
                        let h: Header = postcard::from_bytes(payload)
                            .map_err(|e| corrupt(at, format!("bad header: {e}")))?;
                        check_header(path, &h, header)?;
                        first = false;
                    } else {
                        let runs: Vec<(u64, Vec<R>)> =
                            postcard::from_bytes(payload).map_err(|e| {
                                corrupt(at, format!("record does not decode as results: {e}"))
                            })?;
                        for (start, vals) in runs {
                            let start = start as usize;
                            let end = start.saturating_add(vals.len());
                            if end > seen.len() || seen[start..end].iter().any(|&s| s) {
                                return Err(corrupt(
                                    at,
                                    format!("results {start}..{end} out of range or repeated"),
                                ));
                            }
                            for (i, v) in (start..end).zip(vals) {
                                seen[i] = true;
                                found(i, v);
                            }
                        }
                    }
                    false
                }
            }
        };
        if torn {
            if first {
                fresh(&mut file)?;
            } else {
                file.set_len(at as u64).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
            return Ok(file);
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += FRAME + len;
    }
    if first {
        // Magic only: the header never made it.
        fresh(&mut file)?;
    }
    Ok(file)
}

fn check_header<E>(path: &Path, found: &Header, want: &Header) -> Result<(), CheckpointError<E>> {
    let path = path.to_path_buf();
    if found.items != want.items {
        return Err(CheckpointError::Length {
            path,
            found: found.items,
            expected: want.items,
        });
    }
    if found.item_type != want.item_type {
        return Err(CheckpointError::Type {
            path,
            what: "items",
            found: found.item_type.clone(),
            expected: want.item_type.clone(),
        });
    }
    if found.result_type != want.result_type {
        return Err(CheckpointError::Type {
            path,
            what: "results",
            found: found.result_type.clone(),
            expected: want.result_type.clone(),
        });
    }
    if found.input != want.input {
        return Err(CheckpointError::Input {
            path,
            found: found.input,
            expected: want.input,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing

struct LogState<E> {
    file: File,
    last_sync: Instant,
    error: Option<CheckpointError<E>>,
}

/// The open log of a running map.
struct Log<'a, E> {
    path: &'a Path,
    state: Mutex<LogState<E>>,
    sync_every: Duration,
}

impl<E> Log<'_, E> {
    /// Appends one sealed record; false (and the error kept) if the log cannot be written.
    fn append(&self, frame: &[u8]) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.error.is_some() {
            return false;
        }
        let mut r = st.file.write_all(frame);
        if r.is_ok() && st.last_sync.elapsed() >= self.sync_every {
            r = st.file.sync_data();
            st.last_sync = Instant::now();
        }
        match r {
            Ok(()) => true,
            Err(source) => {
                st.error = Some(CheckpointError::Io {
                    path: self.path.to_path_buf(),
                    source,
                });
                false
            }
        }
    }

    /// Records that the map must stop because of `e` (the first error wins).
    fn fail(&self, e: CheckpointError<E>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.error.get_or_insert(e);
    }

    /// Syncs the log; the first error of the run, if any.
    fn finish(self) -> Option<CheckpointError<E>> {
        let path = self.path;
        let mut st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if st.error.is_none() && self.sync_every != Duration::MAX {
            if let Err(source) = st.file.sync_data() {
                st.error = Some(CheckpointError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        st.error
    }
}

/// The input of the items still to run: item `k` is input item `todo[k]`.
struct Remapped<'a, T> {
    items: SliceInput<'a, T>,
    todo: &'a [usize],
}

impl<'a, T: Sync> MapInput for Remapped<'a, T> {
    /// The item and its index in the input.
    type Item = (&'a T, usize);
    fn len(&self) -> usize {
        self.todo.len()
    }
    #[inline]
    unsafe fn take(&self, k: usize) -> (&'a T, usize) {
        let i = self.todo[k];
        // SAFETY: `k < len` (caller contract) and `todo` holds distinct indices of `items`.
        (unsafe { self.items.take(i) }, i)
    }
}

/// Writes result `k` into slot `todo[k]` of the full output and appends each finished chunk's
/// results to the log.
struct LogSink<'a, R, E> {
    out: VecSink<R>,
    todo: &'a [usize],
    written: &'a [AtomicBool],
    log: &'a Log<'a, E>,
    _r: std::marker::PhantomData<fn() -> R>,
}

/// One run of consecutive results, serialized straight from the output buffer.
#[derive(Serialize)]
struct Run<'a, R>(u64, &'a [R]);

impl<R: Serialize + Send, E: Send> LogSink<'_, R, E> {
    /// The record of chunk `r` (indices into `todo`), or `None` when nothing in it finished.
    fn record(&self, r: Range<usize>) -> Result<Option<Vec<u8>>, String> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for k in r {
            if self.written[k].load(Ordering::Relaxed) {
                push_index(&mut runs, self.todo[k]);
            }
        }
        if runs.is_empty() {
            return Ok(None);
        }
        let refs: Vec<Run<'_, R>> = runs
            .iter()
            .map(|h| {
                // SAFETY: every slot of `h` was written by this participant's `put` during the
                // chunk that just finished (its `written` flag is set), and no other thread
                // writes or reads these slots until the map is collected, after every
                // participant has left; the output buffer is not moved meanwhile.
                let s = unsafe { std::slice::from_raw_parts(self.out.0.add(h.start), h.len()) };
                Run(h.start as u64, s)
            })
            .collect();
        let buf = postcard::to_extend(&refs, vec![0u8; FRAME]).map_err(|e| e.to_string())?;
        Ok(Some(seal(buf)))
    }
}

// SAFETY: the sink writes distinct slots from distinct threads (the `put` contract) and reads a
// slot only on the thread that wrote it (`chunk_done`); `R: Send`, and the log is behind a
// mutex.
unsafe impl<R: Send, E: Send> Sync for LogSink<'_, R, E> {}

impl<R: Serialize + Send, E: Send> Sink<R> for LogSink<'_, R, E> {
    #[inline]
    unsafe fn put(&self, k: usize, r: R) {
        // SAFETY: `k` is in bounds and written once (caller contract); `todo[k]` is a distinct
        // in-bounds slot of the output for each `k`, and not one read from the log.
        unsafe { self.out.put(self.todo[k], r) };
        self.written[k].store(true, Ordering::Relaxed);
    }

    fn chunk_done(&self, r: Range<usize>) -> bool {
        let first = r.start;
        match panic::catch_unwind(AssertUnwindSafe(|| self.record(r))) {
            Ok(Ok(None)) => true,
            Ok(Ok(Some(frame))) => self.log.append(&frame),
            Ok(Err(message)) => {
                self.log.fail(CheckpointError::Encode {
                    what: format!(
                        "a result of the chunk starting at item {}",
                        self.todo[first]
                    ),
                    message,
                });
                false
            }
            Err(payload) => {
                let message = crate::unwind::panic_message(&*payload);
                crate::unwind::drop_payload(payload);
                self.log.fail(CheckpointError::Encode {
                    what: format!(
                        "a result of the chunk starting at item {}",
                        self.todo[first]
                    ),
                    message: format!("Serialize panicked: {message}"),
                });
                false
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster's checkpointed maps (`src/cluster/checkpoint.rs`): the same log, kept by the root

/// The open log of a cluster map, on its root: the same header, records and flush policy as
/// [`Checkpoint`], so a log written by either resumes in the other.
#[cfg(feature = "mpi")]
pub(crate) struct RootLog<'a>(Log<'a, Infallible>);

#[cfg(feature = "mpi")]
impl<'a> RootLog<'a> {
    /// Opens (or creates) the log at `path` for a map of `input` to results `R`, the input
    /// fingerprinted on `pool`: every result found is handed to `found(index, result)`.
    pub(crate) fn open<T, R>(
        pool: &crate::Pool,
        path: &'a Path,
        sync_every: Duration,
        input: &[T],
        found: &mut dyn FnMut(usize, R),
    ) -> Result<Self, CheckpointError>
    where
        T: Serialize + Sync,
        R: DeserializeOwned,
    {
        let header = Header {
            items: input.len() as u64,
            input: fingerprint(&pool.load_balanced(), input)?,
            item_type: std::any::type_name::<T>().to_string(),
            result_type: std::any::type_name::<R>().to_string(),
        };
        let file = open_log::<R, Infallible>(path, &header, found)?;
        Ok(RootLog(Log {
            path,
            state: Mutex::new(LogState {
                file,
                last_sync: Instant::now(),
                error: None,
            }),
            sync_every,
        }))
    }

    /// Appends one record: `runs` serializes as the `(first index, results)` runs of one
    /// chunk. `false` (the error kept for [`finish`](Self::finish)) if it cannot be encoded
    /// or written; `first` names the chunk in that error.
    pub(crate) fn append<S: Serialize>(&self, runs: &S, first: usize) -> bool {
        match postcard::to_extend(runs, vec![0u8; FRAME]) {
            Ok(buf) => self.0.append(&seal(buf)),
            Err(e) => {
                self.fail_encode(first, e.to_string());
                false
            }
        }
    }

    /// Records that a result of the chunk starting at input item `first` could not be
    /// serialized (the map must stop).
    pub(crate) fn fail_encode(&self, first: usize, message: String) {
        self.0.fail(CheckpointError::Encode {
            what: format!("a result of the chunk starting at item {first}"),
            message,
        });
    }

    /// Ends the map's use of the log (syncing it as [`Checkpoint`] does); the first error of
    /// the run, if any.
    pub(crate) fn finish(self) -> Option<CheckpointError> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri (`.ci/miri.sh`): the partial collect, and a checkpointed map that
    //! reads results back from slots its sink wrote (`LogSink::record`) and from the log.
    use crate::map::body::Report;
    use crate::map::sink::{Sink, VecSink, alloc_output, collect_partial};
    use crate::{CheckpointError, MapError, Pool, Schedule};
    use std::convert::Infallible;
    use std::time::Duration;

    #[test]
    fn collect_partial_moves_written_slots_out_once() {
        let n = 6;
        let mut out = alloc_output::<String, Infallible>(n).unwrap();
        let sink = VecSink(out.as_mut_ptr());
        for i in [0, 2, 3, 5] {
            // SAFETY: in bounds, each index once.
            unsafe { sink.put(i, format!("r{i}")) };
        }
        let rep = Report::<Infallible> {
            holes: vec![4..5, 1..2],
            ..Report::default()
        };
        // SAFETY: exactly the slots outside the holes were written.
        let p = unsafe { collect_partial(out, n, rep) }.unwrap_err();
        assert!(matches!(p.error, MapError::Aborted { done: 4, total: 6 }));
        let want: Vec<Option<String>> = [Some(0), None, Some(2), Some(3), None, Some(5)]
            .iter()
            .map(|o| o.map(|i| format!("r{i}")))
            .collect();
        assert_eq!(p.results, want);
    }

    #[test]
    fn checkpointed_map_resumes_with_owned_results() {
        let pool = Pool::builder()
            .workers(2)
            .spin(Duration::ZERO)
            .build()
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "parview-unit-ckpt-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let xs: Vec<u32> = (0..24).collect();
        let lb = pool.schedule(Schedule::Dynamic(3));
        let e = lb
            .checkpoint(&path)
            .try_map(&xs, |&x| if x == 13 { Err(x) } else { Ok(format!("v{x}")) })
            .unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::Map(MapError::Failed { index: 13, .. })
        ));
        let v = pool
            .schedule(Schedule::Guided(1))
            .checkpoint(&path)
            .map(&xs, |x| format!("v{x}"))
            .unwrap();
        assert_eq!(v, xs.iter().map(|x| format!("v{x}")).collect::<Vec<_>>());
        std::fs::remove_file(&path).unwrap();
    }
}
