//! The file store's read cache, kept coherent across processes.
//!
//! Each store keeps recently read sessions in memory (bounded by bytes, least
//! recently used out first). A cached session is served only while nobody has
//! changed its file since it was read, which every process sharing the
//! directory learns from one small table of counters in the directory,
//! `.rs-store-gens`, mapped into memory by each of them (`MAP_SHARED`):
//!
//! * a session file's name picks a slot (the first 16 bits of the hash that
//!   names the file); a slot has two counters, `begun` and `done`;
//! * every change of a session file (write, delete, sweep) adds 1 to `begun`
//!   before it touches the file and 1 to `done` after;
//! * a read may be cached only if, before it, `begun == done` (no change in
//!   progress) and, after it, `begun` has not moved: the cached copy carries
//!   that `begun`;
//! * a cached copy is served while `begun` is still that number (one atomic
//!   load; no system call), and its expiry has not passed.
//!
//! So a write by any process is seen by the next read of every process, as
//! without the cache. A writer killed between its two steps leaves its slot
//! with `begun != done`: ids of that slot are then simply never cached (1 in
//! 65,536 of them). The counters are 64-bit and only grow.
//!
//! What this cannot see: a session file changed by something other than
//! rs-store (an editor, `rm`, an older rs-store), or the table file replaced.
//! So a cached copy is read again from its file when it is older than
//! `MAX_AGE_MS`, and the sweep turns the cache off when the table file at the
//! path is no longer the one mapped. The directory must be on a local file
//! system (as for its `flock`s): a shared mapping is not shared across
//! machines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use hashlink::LinkedHashMap;
use parking_lot::Mutex;

use crate::expiry::{is_expired, Expiry};

/// The table's file name in the store's directory.
pub const GENS_FILE: &str = ".rs-store-gens";
/// Slots in the table: 16 bits of the name hash (1 MiB file, sparse).
const SLOTS: usize = 1 << 16;
/// A cached copy older than this is read again from its file (see the
/// module docs: changes made outside rs-store).
pub const MAX_AGE_MS: u64 = 1000;
/// Bookkeeping counted per entry besides the id and the payload.
const ENTRY_OVERHEAD: usize = 96;

#[repr(C)]
struct Slot {
  begun: AtomicU64,
  done: AtomicU64,
}

/// The shared table of counters (see the module docs).
struct Gens {
  slots: *const Slot,
  path: PathBuf,
  /// (device, inode) of the mapped file.
  id: (u64, u64),
  /// Its entry in [`bus`]'s table: set when the file was cut short under
  /// the mapping (the cache then turns off).
  guard: usize,
}

// SAFETY: the mapping lives as long as `Gens` and is only accessed through
// atomics.
unsafe impl Send for Gens {}
// SAFETY: as for Send: every access to the mapping is an atomic op.
unsafe impl Sync for Gens {}

impl Gens {
  #[cfg(unix)]
  fn open(dir: &Path) -> std::io::Result<Gens> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(GENS_FILE);
    // Never through a link: the table is resized and written.
    let (f, _) = super::files::open_rw(&path, true)?;
    let bytes = SLOTS * std::mem::size_of::<Slot>();
    // Only ever grown (processes opening it at once all grow it to the same
    // size): a mapping past the end of its file would fault.
    if f.metadata()?.len() < bytes as u64 {
      f.set_len(bytes as u64)?;
    }
    let meta = f.metadata()?;
    if meta.len() < bytes as u64 {
      return Err(std::io::Error::other("the table file is too short"));
    }
    // SAFETY: a fresh shared mapping of `bytes` bytes of an open file at
    // least that long; checked for MAP_FAILED below.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    if ptr == libc::MAP_FAILED {
      return Err(std::io::Error::last_os_error());
    }
    let Some(guard) = bus::guard(ptr as usize, bytes) else {
      // SAFETY: the mapping just made, not shared with anything yet.
      unsafe { libc::munmap(ptr, bytes) };
      return Err(std::io::Error::other("too many mapped tables"));
    };
    Ok(Gens { slots: ptr as *const Slot, path, id: (meta.dev(), meta.ino()), guard })
  }

  /// Whether the table file was cut short under the mapping (see [`bus`]).
  fn broken(&self) -> bool {
    bus::broken(self.guard)
  }

  #[cfg(not(unix))]
  fn open(_: &Path) -> std::io::Result<Gens> {
    Err(std::io::Error::other("no shared mappings here"))
  }

  fn slot(&self, i: usize) -> &Slot {
    // SAFETY: i < SLOTS (callers mask it) and the mapping holds SLOTS slots.
    unsafe { &*self.slots.add(i & (SLOTS - 1)) }
  }

  /// Whether the table file at the path is still the mapped one.
  fn still_shared(&self) -> bool {
    #[cfg(unix)]
    {
      use std::os::unix::fs::MetadataExt;
      std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
    #[cfg(not(unix))]
    false
  }
}

impl Drop for Gens {
  fn drop(&mut self) {
    #[cfg(unix)]
    // SAFETY: unmaps exactly the mapping made in `open`; nothing borrows it
    // past `self`.
    unsafe {
      bus::unguard(self.guard);
      libc::munmap(self.slots as *mut libc::c_void, SLOTS * std::mem::size_of::<Slot>());
    }
  }
}

/// A file that is mapped `MAP_SHARED` and then cut short (`truncate` of
/// `.rs-store-gens` by anyone who can write the directory) makes the next
/// access of the mapping fault with SIGBUS, which kills the process. A
/// SIGBUS handler turns such a fault into a cache that is off: when the
/// faulting address lies in a registered table, that table's pages are
/// replaced by private zero pages (so the access completes) and the table
/// is marked broken. Any other SIGBUS goes on to the handler installed
/// before (or the default action).
#[cfg(unix)]
mod bus {
  use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
  use std::sync::Once;

  const N: usize = 256;
  static START: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
  static LEN: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
  static BROKEN: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];
  static INSTALL: Once = Once::new();
  static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();

  /// Registers a mapping; `None` when the table of mappings is full.
  pub fn guard(start: usize, len: usize) -> Option<usize> {
    INSTALL.call_once(install);
    for i in 0..N {
      if LEN[i].compare_exchange(0, len, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        BROKEN[i].store(false, Ordering::SeqCst);
        START[i].store(start, Ordering::SeqCst);
        return Some(i);
      }
    }
    None
  }

  pub fn unguard(i: usize) {
    START[i].store(0, Ordering::SeqCst);
    LEN[i].store(0, Ordering::SeqCst);
  }

  pub fn broken(i: usize) -> bool {
    BROKEN[i].load(Ordering::SeqCst)
  }

  fn install() {
    // The handler is process-wide and outlives the environment installing it.
    crate::runtime::outlive_environments();
    // SAFETY: sigaction with a zeroed struct filled in here; the previous
    // action is kept for faults that are not ours. Runs once.
    unsafe {
      let mut act: libc::sigaction = std::mem::zeroed();
      act.sa_sigaction = on_bus as *const () as usize;
      act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
      libc::sigemptyset(&mut act.sa_mask);
      libc::sigaction(libc::SIGBUS, &act, std::ptr::addr_of_mut!(PREVIOUS).cast());
    }
  }

  extern "C" fn on_bus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: called by the kernel with a valid siginfo for SIGBUS. Only
    // async-signal-safe work: atomics, mmap, sigaction, raise.
    unsafe {
      let addr = (*info).si_addr() as usize;
      for i in 0..N {
        let (start, len) = (START[i].load(Ordering::SeqCst), LEN[i].load(Ordering::SeqCst));
        if start != 0 && addr >= start && addr < start + len {
          let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
          if libc::mmap(start as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) != libc::MAP_FAILED {
            BROKEN[i].store(true, Ordering::SeqCst);
            return;
          }
        }
      }
      let prev = &*std::ptr::addr_of!(PREVIOUS).cast::<libc::sigaction>();
      match prev.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
          libc::signal(sig, libc::SIG_DFL);
          libc::raise(sig);
        }
        h if prev.sa_flags & libc::SA_SIGINFO != 0 => {
          let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(h);
          f(sig, info, ctx);
        }
        h => {
          let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
          f(sig);
        }
      }
    }
  }
}

#[cfg(not(unix))]
mod bus {
  pub fn broken(_: usize) -> bool {
    false
  }
}

/// The slot of a session file name (`<sha256 hex>.sess`): its first 4 hex
/// digits. Names that are not hex fall in slot 0.
pub fn slot_of(name: &str) -> usize {
  name.get(..4).and_then(|h| usize::from_str_radix(h, 16).ok()).unwrap_or(0)
}

struct Entry {
  slot: usize,
  /// `begun` of the slot when this copy was read.
  gen: u64,
  /// When it was read (ms).
  read_at: u64,
  expires: Option<Expiry>,
  payload: Vec<u8>,
}

struct Lru {
  map: LinkedHashMap<String, Entry>,
  bytes: usize,
}

impl Lru {
  fn remove(&mut self, id: &str) {
    if let Some(e) = self.map.remove(id) {
      self.bytes -= cost(id, &e);
    }
  }
}

fn cost(id: &str, e: &Entry) -> usize {
  id.len() + e.payload.len() + ENTRY_OVERHEAD
}

/// What a reader noted before reading a file (see [`ReadCache::before_read`]):
/// the file's slot, and `begun` there if no change was in progress.
#[derive(Clone, Copy)]
pub struct Seen {
  slot: usize,
  gen: Option<u64>,
}

/// What a writer noted when it began a change (see [`ReadCache::begin`]).
pub struct Change {
  slot: usize,
  /// `begun` just before this change, if no other change was in progress.
  alone: Option<u64>,
}

pub struct ReadCache {
  gens: Gens,
  /// Bytes it may hold; 0: it caches nothing, and only counts this
  /// store's changes for the other processes' caches.
  budget: usize,
  on: AtomicBool,
  lru: Mutex<Lru>,
}

impl ReadCache {
  /// A cache of up to `budget` bytes for the store in `dir`; `None` when the
  /// table cannot be mapped here (the store then reads every time).
  pub fn new(dir: &Path, budget: usize) -> Option<ReadCache> {
    let gens = Gens::open(dir).ok()?;
    Some(ReadCache { gens, budget, on: AtomicBool::new(true), lru: Mutex::new(Lru { map: LinkedHashMap::new(), bytes: 0 }) })
  }

  /// The cached payload of `id` if no change to its file began since it was
  /// read, it is at most `MAX_AGE_MS` old and not expired. (The entry knows
  /// its slot: a hit hashes nothing but the id.)
  pub fn get(&self, id: &str, now: u64) -> Option<Vec<u8>> {
    if self.budget == 0 || !self.on.load(Ordering::Relaxed) {
      return None;
    }
    let mut lru = self.lru.lock();
    let e = lru.map.to_back(id)?;
    let gen = self.gens.slot(e.slot).begun.load(Ordering::Acquire);
    if self.gens.broken() {
      self.on.store(false, Ordering::Relaxed);
      lru.map.clear();
      return None;
    }
    if e.gen == gen && now.saturating_sub(e.read_at) < MAX_AGE_MS && !is_expired(e.expires, now) {
      return Some(e.payload.clone());
    }
    lru.remove(id);
    None
  }

  /// Called before reading the file of `slot`.
  pub fn before_read(&self, slot: usize) -> Seen {
    let s = self.gens.slot(slot);
    let begun = s.begun.load(Ordering::SeqCst);
    let done = s.done.load(Ordering::SeqCst);
    // The counters are read before the file is (the fences order this
    // process's counter accesses against its file system calls, on weakly
    // ordered CPUs too).
    fence(Ordering::SeqCst);
    Seen { slot, gen: (begun == done).then_some(begun) }
  }

  /// Called after a read of the file that found this session: caches it if
  /// no change began since [`ReadCache::before_read`].
  pub fn after_read(&self, seen: Seen, id: &str, expires: Option<Expiry>, payload: &[u8], now: u64) {
    let Seen { slot, gen: Some(gen) } = seen else { return };
    if self.budget == 0 {
      return;
    }
    fence(Ordering::SeqCst);
    if self.gens.slot(slot).begun.load(Ordering::SeqCst) == gen {
      self.insert(id, Entry { slot, gen, read_at: now, expires, payload: payload.to_vec() });
    }
  }

  /// Called before a change of the file of `slot` (holding `id`, when
  /// known): from now on no process serves a copy read before it.
  pub fn begin(&self, id: Option<&str>, slot: usize) -> Change {
    if let Some(id) = id {
      self.lru.lock().remove(id);
    }
    let s = self.gens.slot(slot);
    let before = s.begun.fetch_add(1, Ordering::SeqCst);
    let done = s.done.load(Ordering::SeqCst);
    fence(Ordering::SeqCst); // counted before the file changes
    Change { slot, alone: (done == before).then_some(before) }
  }

  /// Called after the change, whether or not it succeeded. `wrote`: the
  /// session the file now holds, when it was written; it is cached if no
  /// other change of the slot overlapped this one (so the file holds it).
  pub fn end(&self, change: Change, wrote: Option<(&str, Option<Expiry>, &[u8], u64)>) {
    let s = self.gens.slot(change.slot);
    fence(Ordering::SeqCst); // the file changed before this counts
    s.done.fetch_add(1, Ordering::SeqCst);
    let (Some(before), Some((id, expires, payload, now)), true) = (change.alone, wrote, self.budget > 0) else { return };
    let gen = before + 1;
    if s.begun.load(Ordering::SeqCst) == gen && s.done.load(Ordering::SeqCst) == gen {
      self.insert(id, Entry { slot: change.slot, gen, read_at: now, expires, payload: payload.to_vec() });
    }
  }

  fn insert(&self, id: &str, e: Entry) {
    if !self.on.load(Ordering::Relaxed) || self.gens.broken() {
      return;
    }
    let size = cost(id, &e);
    if size > self.budget / 8 {
      return; // one huge session must not empty the cache
    }
    let mut lru = self.lru.lock();
    lru.remove(id);
    while lru.bytes + size > self.budget {
      match lru.map.pop_front() {
        Some((k, old)) => lru.bytes -= cost(&k, &old),
        None => break,
      }
    }
    lru.bytes += size;
    lru.map.insert(id.to_string(), e);
  }

  /// Turns the cache off for good when the table file was removed or
  /// replaced (other processes may count in another one now).
  pub fn check_shared(&self) {
    if self.on.load(Ordering::Relaxed) && !self.gens.still_shared() {
      self.on.store(false, Ordering::Relaxed);
      let mut lru = self.lru.lock();
      lru.map.clear();
      lru.bytes = 0;
    }
  }
}
