//! The core's socket-free `lock`, `unlock` and `extend` for `lib/direct.js`, which drives
//! Node's own sockets: every method runs on the JavaScript thread and returns at once.

use std::sync::Arc;
use std::time::Instant;

use napi::bindgen_prelude::{Array, Buffer, Env};
use napi_derive::napi;

use super::completions::{error_record, Completions};
use super::{
  acquire_options, lock_arguments, permits_options, to_js, AcquireConfig, Code, LockConfig,
  NativeLock, PermitsConfig,
};
use relock_core::engine::host::Address;
use relock_core::engine::wire::Action;
use relock_core::mutex::direct::{Direct, Settled};
use relock_core::{self as core, validate};

/// Where JavaScript connects for one host: `host` and `port`, or a Unix socket `path`.
#[napi(object)]
pub struct SocketAddress {
  pub host: Option<String>,
  pub port: Option<u32>,
  pub path: Option<String>,
}

#[napi]
pub struct NativeDirect {
  direct: Direct,
  mutex: Arc<core::Mutex>,
  semaphore: Arc<core::Semaphore>,
  rwlock: Arc<core::RwLock>,
  multi: Arc<core::MultiLock>,
  /// Where losses of the locks taken here are reported.
  completions: Arc<Completions>,
}

impl NativeDirect {
  pub fn new(client: &core::Client, completions: Arc<Completions>) -> Option<NativeDirect> {
    Some(NativeDirect {
      completions,
      direct: Direct::new(client.mutex().clone())?,
      mutex: client.mutex().clone(),
      semaphore: client.semaphore().clone(),
      rwlock: client.rwlock().clone(),
      multi: client.multi().clone(),
    })
  }
}

#[napi]
impl NativeDirect {
  /// How long a connect may take, in ms.
  #[napi(getter)]
  pub fn connect_timeout(&self) -> f64 {
    self.mutex.engine().options().connect_timeout.as_secs_f64() * 1000.0
  }

  /// One address per host, in the client's order.
  #[napi(getter)]
  pub fn addresses(&self) -> Vec<SocketAddress> {
    self
      .mutex
      .engine()
      .hosts()
      .iter()
      .map(
        |host| match host.endpoint().map(|endpoint| &endpoint.address) {
          Some(Address::Tcp { host, port }) => SocketAddress {
            host: Some(host.clone()),
            port: Some(u32::from(*port)),
            path: None,
          },
          Some(Address::Unix { path }) => SocketAddress {
            host: None,
            port: None,
            path: Some(path.clone()),
          },
          None => unreachable!("a direct client has an address for every host"),
        },
      )
      .collect()
  }

  #[napi]
  pub fn lock(
    &mut self,
    id: u32,
    key: String,
    ttl: f64,
    retry: Option<LockConfig>,
    with_validity: bool,
  ) -> napi::Result<(), Code> {
    let (ttl_ms, retry) = lock_arguments(self.mutex.engine(), ttl, retry)?;
    // The first call checks the hosts' run ids on the native runtime.
    napi::bindgen_prelude::within_runtime_if_available(|| {
      self.direct.lock(id, &key, ttl_ms, retry, with_validity)
    });
    Ok(())
  }

  #[napi]
  pub fn retry(&mut self, id: u32) {
    self.direct.retry(id);
  }

  #[napi]
  pub fn unlock(&mut self, id: u32, key: String, token: String) {
    self.direct.unlock(id, &key, &token);
  }

  #[napi]
  pub fn extend(
    &mut self,
    id: u32,
    key: String,
    token: String,
    ttl: f64,
  ) -> napi::Result<(), Code> {
    let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
    self.direct.extend(id, &key, &token, ttl_ms);
    Ok(())
  }

  /// The first attempt of `acquire`, when the hosts and options allow it here; false when the
  /// wait belongs to the native client from the start. It settles with a lock, or with null:
  /// the key was not free, and the wait goes on in the native client.
  #[napi]
  pub fn acquire(
    &mut self,
    id: u32,
    key: String,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<bool, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    Ok(
      self
        .direct
        .acquire(id, &key, options, self.completions.lost_callback(lost_id)),
    )
  }

  /// As `acquire`, for a read (`write` false) or write hold of a read-write lock.
  #[napi]
  pub fn acquire_read_write(
    &mut self,
    id: u32,
    key: String,
    write: bool,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<bool, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    let mode = if write {
      core::Mode::Write
    } else {
      core::Mode::Read
    };
    let attempt =
      self
        .rwlock
        .first_attempt(&key, mode, options, self.completions.lost_callback(lost_id));
    Ok(self.direct.first_attempt(id, attempt))
  }

  /// As `acquire`, for `count` of a semaphore's `permits`.
  #[napi]
  pub fn acquire_permits(
    &mut self,
    id: u32,
    key: String,
    permits: f64,
    config: Option<PermitsConfig>,
    lost_id: u32,
  ) -> napi::Result<bool, Code> {
    let options = permits_options(permits, config).map_err(to_js)?;
    let attempt =
      self
        .semaphore
        .first_attempt(&key, options, self.completions.lost_callback(lost_id));
    Ok(self.direct.first_attempt(id, attempt))
  }

  /// As `acquire`, for every one of `keys` or none.
  #[napi]
  pub fn acquire_many(
    &mut self,
    id: u32,
    keys: Vec<String>,
    config: Option<AcquireConfig>,
    lost_id: u32,
  ) -> napi::Result<bool, Code> {
    let options = acquire_options(&config.unwrap_or_default()).map_err(to_js)?;
    let attempt = self
      .multi
      .first_attempt(&keys, options, self.completions.lost_callback(lost_id));
    Ok(self.direct.first_attempt(id, attempt))
  }

  /// `lock` over several keys, when it can be made here (one host, one slot group); false
  /// when it belongs to the native client.
  #[napi]
  pub fn lock_many(&mut self, id: u32, keys: Vec<String>, ttl: f64) -> napi::Result<bool, Code> {
    let ttl_ms = validate::lease("ttl", ttl).map_err(to_js)?;
    let call = self.multi.lock_call(&keys, ttl_ms);
    Ok(self.direct.one_call(id, call))
  }

  /// `unlock` over several keys, as `lock_many`.
  #[napi]
  pub fn unlock_many(&mut self, id: u32, keys: Vec<String>, token: String) -> bool {
    let call = self.multi.unlock_call(&keys, &token);
    self.direct.one_call(id, call)
  }

  #[napi]
  pub fn release(&mut self, id: u32, lock: &NativeLock) {
    self.direct.release(id, lock.held.clone());
  }

  #[napi]
  pub fn connected(&mut self, host: u32) {
    self.direct.connected(host as usize);
  }

  /// The socket to `host` closed or failed; `timed_out` when it was the connect that took too
  /// long.
  #[napi]
  pub fn closed(&mut self, host: u32, message: String, timed_out: bool) {
    napi::bindgen_prelude::within_runtime_if_available(|| self.close_host(host, message, timed_out))
  }

  fn close_host(&mut self, host: u32, message: String, timed_out: bool) {
    let engine = self.mutex.engine();
    let host_index = host as usize;
    let label = engine.hosts()[host_index].label().to_owned();
    let error = if timed_out {
      engine.hosts()[host_index].timed_out()
    } else {
      core::Error::new(core::ErrorKind::Connection, format!("{label}: {message}"))
    };
    self.direct.closed(host_index, error);
  }

  /// Bytes read from `host`; true when the socket must be closed (not the Redis protocol, a
  /// failed handshake).
  #[napi]
  pub fn received(&mut self, host: u32, bytes: Buffer) -> bool {
    // A lock taken here starts its watchdog on the native runtime.
    napi::bindgen_prelude::within_runtime_if_available(|| {
      self.direct.received(host as usize, &bytes)
    })
  }

  /// Fails what has had no answer within its time.
  #[napi]
  pub fn expire(&mut self) {
    napi::bindgen_prelude::within_runtime_if_available(|| self.direct.expire(Instant::now()));
  }

  #[napi]
  pub fn close(&mut self) {
    self.direct.close();
  }

  /// What to do now, as a flat array: the ms until the earliest call times out (-1 if none),
  /// whether requests are unanswered, the number of socket actions, each as `host` and the
  /// bytes to write (or null: connect), then settled calls as `[id, kind, value, extra]`
  /// records (`kind` 1: done, `value` the result (null from `acquire`: wait on the native
  /// client) and `extra` a lease's validity; 0: failed,
  /// `value` is `{ code, message, cause }`; 2: try again after `value` ms).
  #[napi(ts_return_type = "Array<number | boolean | string | null | Buffer | object>")]
  pub fn turn<'env>(&mut self, env: &'env Env) -> napi::Result<Array<'env>> {
    let turn = self.direct.turn();
    let size = 3 + turn.actions.len() * 2 + turn.settled.len() * 4;
    let mut out = env.create_array(size as u32)?;
    let next_deadline = turn.next_deadline.map_or(-1.0, |deadline| {
      deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64()
        * 1000.0
    });
    out.set(0, next_deadline)?;
    out.set(1, turn.busy)?;
    out.set(2, turn.actions.len() as u32)?;
    let mut at = 3;
    for action in turn.actions {
      match action {
        Action::Connect(host) => {
          out.set(at, host as u32)?;
          out.set(at + 1, Option::<Buffer>::None)?;
        }
        Action::Write(host, bytes) => {
          out.set(at, host as u32)?;
          out.set(at + 1, Buffer::from(bytes))?;
        }
      }
      at += 2;
    }
    for (id, settled) in turn.settled {
      out.set(at, id)?;
      match settled {
        Settled::Token(token) => {
          out.set(at + 1, 1)?;
          out.set(at + 2, token)?;
        }
        Settled::Lease(Some((token, validity))) => {
          out.set(at + 1, 1)?;
          out.set(at + 2, token)?;
          out.set(at + 3, validity)?;
        }
        Settled::Lease(None) => {
          out.set(at + 1, 1)?;
          out.set(at + 2, Option::<String>::None)?;
        }
        Settled::Flag(flag) => {
          out.set(at + 1, 1)?;
          out.set(at + 2, flag)?;
        }
        Settled::Failed(error) => {
          out.set(at + 1, 0)?;
          out.set(at + 2, error_record(env, &error)?)?;
        }
        Settled::RetryAfter(pause) => {
          out.set(at + 1, 2)?;
          out.set(at + 2, pause.as_secs_f64() * 1000.0)?;
        }
        Settled::Held(held) => {
          out.set(at + 1, 1)?;
          out.set(at + 2, NativeLock { held })?;
        }
        Settled::Wait => {
          out.set(at + 1, 1)?;
          out.set(at + 2, Option::<String>::None)?;
        }
      }
      at += 4;
    }
    Ok(out)
  }
}
