//! Hands finished calls to JavaScript in batches.
//!
//! An `async fn` exported by napi-rs creates a threadsafe function (a libuv handle) for every
//! call and wakes the event loop once per result. For the short, frequent calls (lock, unlock,
//! extend, acquire, release) that cost more than the Redis round trip itself. Here every result goes into one
//! queue instead, and one long-lived threadsafe function wakes JavaScript once for all the
//! results that arrived meanwhile; JavaScript then settles its promises by call id.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Array, Env};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Status};

use super::{ListingInfo, LockInfo, NativeLock, ReadWriteInfo, SemaphoreInfo};
use relock_core as core;

/// What a finished call resolves to.
pub enum Outcome {
  Token(Option<String>),
  Flag(bool),
  Lease(Option<(String, f64)>),
  Held(Arc<core::HeldLock>),
  /// What `inspect` found on each host.
  States(Vec<core::LockState>),
  Listing(core::Listing),
  Semaphore(core::SemaphoreState),
  ReadWrite(core::RwState),
  /// Done, with nothing to report (resolves to `undefined`).
  Done,
  Failed(core::Error),
  /// Not a call's result: the lock taken by the acquire of this loss id was lost.
  Lost(core::Error),
}

/// The `ok` of a loss record.
const LOST: u32 = 2;

/// The JavaScript function called (with no arguments) when results are waiting.
pub type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

pub struct Completions {
  ready: Mutex<Vec<(u32, Outcome)>>,
  wake_pending: AtomicBool,
  wake: Wake,
  /// Calls started and not yet handed back; touched only on the JavaScript thread.
  in_flight: AtomicU32,
}

impl Completions {
  pub fn new(wake: Wake) -> Completions {
    Completions {
      ready: Mutex::new(Vec::new()),
      wake_pending: AtomicBool::new(false),
      wake,
      in_flight: AtomicU32::new(0),
    }
  }

  /// Counts a call as started. While any call is in flight the wake-up handle keeps the event
  /// loop alive, as a pending promise should; when none is, it lets the process exit.
  pub fn started(&self, env: &Env) {
    if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
      // SAFETY: called on the JavaScript thread of `env`, which owns the threadsafe function.
      unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.wake.raw()) };
    }
  }

  /// Queues a result; from any thread.
  pub fn finish(&self, id: u32, outcome: Outcome) {
    self
      .ready
      .lock()
      .expect("completions lock")
      .push((id, outcome));
    if !self.wake_pending.swap(true, Ordering::AcqRel) {
      self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }

  /// Reports the loss of a held lock under `lost_id`, with the results: one wake-up handle for
  /// every lock of the client, where a handle per lock cost more than its whole acquire.
  pub fn lost_callback(self: &Arc<Self>, lost_id: u32) -> core::LostCallback {
    let completions = self.clone();
    Box::new(move |reason: &core::Error| completions.finish(lost_id, Outcome::Lost(reason.clone())))
  }

  /// Takes every queued result as a flat array of `[id, ok, value, extra]` records: `ok` is
  /// false for a failure (then `value` is `{ code, message, cause }`), `extra` is the validity
  /// of a lease. A loss is the record `[lost id, 2, { code, message, cause }]`.
  pub fn take<'env>(&self, env: &'env Env) -> napi::Result<Array<'env>> {
    self.wake_pending.store(false, Ordering::Release);
    let ready = std::mem::take(&mut *self.ready.lock().expect("completions lock"));
    let mut records = env.create_array((ready.len() * 4) as u32)?;
    for (index, (id, outcome)) in ready.iter().enumerate() {
      let at = (index * 4) as u32;
      records.set(at, *id)?;
      match outcome {
        Outcome::Lost(_) => records.set(at + 1, LOST)?,
        Outcome::Failed(_) => records.set(at + 1, false)?,
        _ => records.set(at + 1, true)?,
      }
      match outcome {
        Outcome::Token(token) => records.set(at + 2, token.as_deref())?,
        Outcome::Flag(flag) => records.set(at + 2, *flag)?,
        Outcome::Lease(Some((token, validity))) => {
          records.set(at + 2, token.as_str())?;
          records.set(at + 3, *validity)?;
        }
        Outcome::Lease(None) => records.set(at + 2, Option::<&str>::None)?,
        Outcome::Held(held) => records.set(at + 2, NativeLock { held: held.clone() })?,
        Outcome::States(states) => records.set(
          at + 2,
          states
            .iter()
            .cloned()
            .map(LockInfo::from)
            .collect::<Vec<_>>(),
        )?,
        Outcome::Listing(listing) => records.set(at + 2, ListingInfo::from(listing))?,
        Outcome::Semaphore(state) => records.set(at + 2, SemaphoreInfo::from(state))?,
        Outcome::ReadWrite(state) => records.set(at + 2, ReadWriteInfo::from(state))?,
        Outcome::Done => {}
        Outcome::Failed(error) | Outcome::Lost(error) => {
          records.set(at + 2, error_record(env, error)?)?
        }
      }
    }
    let results = ready
      .iter()
      .filter(|(_, outcome)| !matches!(outcome, Outcome::Lost(_)))
      .count() as u32;
    let left = self.in_flight.fetch_sub(results, Ordering::Relaxed) - results;
    if left == 0 && results > 0 {
      // SAFETY: as in `started`.
      unsafe { sys::napi_unref_threadsafe_function(env.raw(), self.wake.raw()) };
    }
    Ok(records)
  }
}

/// A failure as plain data: `{ code, message, cause? }`, the cause in the same shape.
pub(crate) fn error_record<'env>(
  env: &'env Env,
  error: &core::Error,
) -> napi::Result<napi::bindgen_prelude::Object<'env>> {
  let mut record = napi::bindgen_prelude::Object::new(env)?;
  record.set("code", error.code())?;
  record.set("message", error.message())?;
  if let Some(cause) = error.cause() {
    record.set("cause", error_record(env, cause)?)?;
  }
  Ok(record)
}
