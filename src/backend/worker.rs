//! The one background worker type (the file store's sweep, sessions.json's
//! writer): a named thread plus the state it shares with its store, under
//! one lock with one condition variable. One shutdown rule: `stop()` (which
//! `close()` calls, and drop) sets `stop` in that state, wakes the thread
//! and joins it; the thread returns when it sees `stop`.
//!
//! Not workers: the memory stores' sweeps share one process-wide thread
//! that holds no store (a store leaves its list on close), and object
//! storage sweeps in a task on the tokio runtime, aborted on close.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Code, Result, StoreError};

/// The state a worker shares with its store, and whether it must stop.
pub struct State<S> {
  pub stop: bool,
  pub s: S,
}

impl<S> Deref for State<S> {
  type Target = S;
  fn deref(&self) -> &S {
    &self.s
  }
}

impl<S> DerefMut for State<S> {
  fn deref_mut(&mut self) -> &mut S {
    &mut self.s
  }
}

/// What the thread and the store both hold.
pub struct Shared<S> {
  state: Mutex<State<S>>,
  cv: Condvar,
}

impl<S> Shared<S> {
  pub fn lock(&self) -> MutexGuard<'_, State<S>> {
    self.state.lock()
  }

  /// Wakes whoever waits on the state (the thread, or a store waiting for it).
  pub fn notify(&self) {
    self.cv.notify_all();
  }

  /// Waits for a `notify`, or until `deadline`; true when the deadline passed.
  pub fn wait(&self, guard: &mut MutexGuard<'_, State<S>>, deadline: Option<Instant>) -> bool {
    match deadline {
      Some(at) => self.cv.wait_until(guard, at).timed_out(),
      None => {
        self.cv.wait(guard);
        false
      }
    }
  }

  /// Whether the worker was told to stop (for long steps to check as they go).
  pub fn stopping(&self) -> bool {
    self.state.lock().stop
  }
}

pub struct Worker<S> {
  shared: Arc<Shared<S>>,
  thread: Mutex<Option<JoinHandle<()>>>,
}

impl<S: Send + 'static> Worker<S> {
  /// Starts thread `name` running `body` over the shared `state`.
  pub fn spawn(name: &str, state: S, body: impl FnOnce(&Shared<S>) + Send + 'static) -> Result<Self> {
    let shared = Arc::new(Shared { state: Mutex::new(State { stop: false, s: state }), cv: Condvar::new() });
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
      .name(name.into())
      .spawn(move || body(&theirs))
      .map_err(|e| StoreError::new(Code::Internal, format!("cannot start {name}: {e}")))?;
    Ok(Worker { shared, thread: Mutex::new(Some(thread)) })
  }
}

impl<S> Worker<S> {
  /// Tells the thread to stop and waits for it to end. Idempotent.
  pub fn stop(&self) {
    self.shared.state.lock().stop = true;
    self.shared.cv.notify_all();
    if let Some(t) = self.thread.lock().take() {
      // (A worker stopping itself must not wait for itself.)
      if t.thread().id() != std::thread::current().id() {
        let _ = t.join();
      }
    }
  }
}

impl<S> Deref for Worker<S> {
  type Target = Shared<S>;
  fn deref(&self) -> &Shared<S> {
    &self.shared
  }
}

impl<S> Drop for Worker<S> {
  fn drop(&mut self) {
    self.stop();
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  #[test]
  fn stop_ends_and_joins_the_thread() {
    let w = Worker::spawn("test-worker", 0u32, |sh| {
      let mut st = sh.lock();
      while !st.stop {
        st.s += 1;
        sh.wait(&mut st, Some(Instant::now() + Duration::from_millis(1)));
      }
      st.s = 1000;
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    w.stop();
    assert_eq!(w.lock().s, 1000, "the thread ran to its end before stop returned");
    w.stop();
  }
}
