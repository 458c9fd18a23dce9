//! A counting semaphore: up to `permits` permits in use at once, each holder taking one or
//! more. Every holder has one entry with its count and its own lease on Redis's clock, renewed
//! by the watchdog; a crashed holder's permits come back when its lease ends, reclaimed by the
//! next call. Waits are woken by release messages; `fair` admits strictly in arrival order.
//!
//! The number of permits is an argument of each call, not stored: a caller is admitted when
//! what is in use plus what it asks for fits in the `permits` it names. Lowering it for a live
//! semaphore takes nothing away from current holders; new callers wait until use falls below
//! the new number. Raising it admits waiters at their next look (a release, or their re-check).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::engine::host::Host;
use crate::engine::host::ToRedisArgsRef;
use crate::engine::new_token;
use crate::engine::resp::Reply;
use crate::engine::script::{integers, Decision, FirstAttempt, Lua, ReleaseCall, ScriptCall};
use crate::engine::stats::Event;
use crate::engine::wait::{recheck_after, wait_for_grant, Attempt};
use crate::engine::watchdog::{Grant, HeldLock, LostCallback, Renewal};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::mutex::acquire::{AcquireOptions, FAIR_LIVENESS};
use crate::mutex::keys::{own_suffix, side_key, slot_preserving_base};
use crate::validate;

const PRELUDE: &str = include_str!("scripts/prelude.lua");

fn with_prelude(body: &str) -> Lua {
  Lua::with_prelude(PRELUDE, body)
}

static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/acquire.lua")));
static RELEASE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/release.lua")));
/// A holder's release: no clock and two keys, which is most of a cycle's cost in Redis.
static RELEASE_HELD: LazyLock<Lua> =
  LazyLock::new(|| Lua::new(include_str!("scripts/release_held.lua")));
static EXTEND: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/extend.lua")));
static STATE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/state.lua")));

/// Most holders and waiters `state` lists; their counts are always exact.
pub const STATE_LIST_LIMIT: usize = 1000;

/// The keys of one semaphore, all in the hash slot of its name.
#[derive(Debug, Clone)]
pub struct SemaphoreKeys {
  /// The semaphore's own key: holders scored by the end of their lease.
  pub leases: String,
  /// Each holder's permits, and their sum.
  pub held: String,
  pub queue: String,
  pub liveness: String,
  pub arrivals: String,
  pub fence: String,
  pub channel: String,
}

impl SemaphoreKeys {
  pub fn new(key: &str) -> SemaphoreKeys {
    let base = slot_preserving_base(key);
    let shared = |name: &str| side_key(&base, &["semaphore:", name]);
    // State of its own; `{x}` would share `x`'s otherwise (fence and channel may be shared).
    let own = |name: &str| side_key(&base, &["semaphore:", name, own_suffix(key)]);
    SemaphoreKeys {
      leases: key.to_owned(),
      held: own("held"),
      queue: own("queue"),
      liveness: own("liveness"),
      arrivals: own("arrivals"),
      fence: shared("fence"),
      channel: shared("released"),
    }
  }

  /// In the order the scripts declare them.
  fn all(&self) -> [&str; 6] {
    [
      &self.leases,
      &self.held,
      &self.queue,
      &self.liveness,
      &self.arrivals,
      &self.fence,
    ]
  }
}

#[derive(Debug, Clone)]
pub struct SemaphoreOptions {
  /// Permits of the semaphore.
  pub permits: u64,
  /// Permits this caller takes.
  pub count: u64,
  pub acquire: AcquireOptions,
}

/// A semaphore's state, for callers and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct SemaphoreState {
  pub in_use: u64,
  /// Holders (at most [`STATE_LIST_LIMIT`]), soonest lease end first.
  pub holders: Vec<PermitHolder>,
  /// Fair waiters in queue order (at most [`STATE_LIST_LIMIT`]).
  pub queue: Vec<String>,
  pub holder_count: u64,
  pub queue_length: u64,
  /// The last fence handed out.
  pub fence: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PermitHolder {
  pub token: String,
  pub permits: u64,
  pub ttl_ms: i64,
}

pub struct Semaphore {
  engine: Arc<Engine>,
}

impl Semaphore {
  pub fn new(engine: Arc<Engine>) -> Semaphore {
    Semaphore { engine }
  }

  fn host(&self) -> Result<&Arc<Host>> {
    self.engine.single_host("a semaphore")
  }

  /// Waits until `options.count` permits of `key` are this caller's, then hands them to a
  /// guardian that renews their lease and reports its loss through `on_lost`. The checks are
  /// made now, the waiting in the returned future.
  pub fn begin_acquire(
    self: &Arc<Self>,
    key: &str,
    options: SemaphoreOptions,
    cancel: CancellationToken,
    on_lost: LostCallback,
  ) -> impl std::future::Future<Output = Result<Arc<HeldLock>>> + Send + 'static {
    let semaphore = self.clone();
    let name = key.to_owned();
    let keys = SemaphoreKeys::new(&self.engine.redis_key(key));
    let checked = validate::key(key)
      .and_then(|()| self.engine.ensure_open())
      .and_then(|()| self.host().map(|_| ()))
      .and_then(|()| check_counts(options.permits, options.count));
    async move {
      checked?;
      let token = new_token();
      let clean_up = {
        let (semaphore, keys, token) = (semaphore.clone(), keys.clone(), token.clone());
        async move {
          let _ = semaphore.release_stored(&keys, &token, false).await;
        }
      };
      let granted = wait_for_grant(
        &semaphore.engine,
        &name,
        cancel,
        options.acquire.wait,
        &keys.channel,
        || semaphore.try_acquire(&keys, &token, &options),
        clean_up,
      )
      .await?;
      Ok(semaphore.hold(keys, token, name, &options, granted, on_lost))
    }
  }

  /// The first attempt of an acquire, for the event-loop path: `None` when this acquire waits
  /// on the native path from the start (fair, a single try, bad input, a closed client).
  pub fn first_attempt(
    self: &Arc<Self>,
    key: &str,
    options: SemaphoreOptions,
    on_lost: LostCallback,
  ) -> Option<Box<dyn FirstAttempt>> {
    let eligible = !options.acquire.fair
      && options.acquire.wait != Some(Duration::ZERO)
      && validate::key(key).is_ok()
      && self.engine.ensure_open().is_ok()
      && self.host().is_ok()
      && check_counts(options.permits, options.count).is_ok();
    eligible.then(|| {
      Box::new(FirstPermits {
        semaphore: self.clone(),
        keys: SemaphoreKeys::new(&self.engine.redis_key(key)),
        token: new_token(),
        name: key.to_owned(),
        options,
        on_lost,
      }) as Box<dyn FirstAttempt>
    })
  }

  /// Only what the script reads: a caller that is not fair passes no queue arguments.
  fn acquire_args(keys: &SemaphoreKeys, token: &str, options: &SemaphoreOptions) -> Vec<String> {
    let mut args = vec![
      token.to_owned(),
      options.count.to_string(),
      options.permits.to_string(),
      options.acquire.lease_ms().to_string(),
      keys.channel.clone(),
    ];
    if options.acquire.fair {
      args.push("1".to_owned());
      args.push(FAIR_LIVENESS.as_millis().to_string());
    }
    args
  }

  fn hold(
    self: &Arc<Self>,
    keys: SemaphoreKeys,
    token: String,
    name: String,
    options: &SemaphoreOptions,
    (fence, valid_until): (i64, Instant),
    on_lost: LostCallback,
  ) -> Arc<HeldLock> {
    let grant = Grant {
      token: token.clone(),
      fence,
      parts: Vec::new(),
      ttl_ms: options.acquire.ttl_ms,
      valid_until,
      watchdog: options.acquire.watchdog,
      max_hold: options.acquire.max_hold,
    };
    let hold = Box::new(PermitHold {
      semaphore: self.clone(),
      keys,
      token,
    });
    HeldLock::start(self.engine.clone(), hold, grant, name, on_lost)
  }

  fn try_acquire<'a>(
    &'a self,
    keys: &'a SemaphoreKeys,
    token: &'a str,
    options: &'a SemaphoreOptions,
  ) -> BoxFuture<'a, Result<Attempt<(i64, Instant)>>> {
    Box::pin(async move {
      let host = self.host()?;
      let sent = Instant::now();
      let lease_ms = options.acquire.lease_ms();
      let args = Self::acquire_args(keys, token, options);
      let args: Vec<&dyn ToRedisArgsRef> =
        args.iter().map(|arg| arg as &dyn ToRedisArgsRef).collect();
      let reply: Vec<i64> = host.eval(ACQUIRE.script(), &keys.all(), &args).await?;
      match reply.as_slice() {
        [1, fence, ..] => match self.engine.lease_until(sent, lease_ms) {
          Some(until) => Ok(Attempt::Taken((*fence, until))),
          // Admitted with no time left: give the permits back and try again.
          None => {
            self.release_stored(keys, token, false).await?;
            Ok(Attempt::Busy(Duration::ZERO))
          }
        },
        [0, _, first_lease_end_ms] => {
          let recheck = recheck_after(Some(*first_lease_end_ms));
          Ok(Attempt::Busy(if options.acquire.fair {
            recheck.min(FAIR_LIVENESS / 3)
          } else {
            recheck
          }))
        }
        _ => Err(unexpected(host, "acquire")),
      }
    })
  }

  /// Gives back what `token` holds; `held` when it holds permits (a handle's release), else
  /// also what it may have left waiting.
  async fn release_stored(&self, keys: &SemaphoreKeys, token: &str, held: bool) -> Result<bool> {
    let released: i64 = self
      .host()?
      .run(&self.release_call(keys, token, held))
      .await?;
    Ok(released == 1)
  }

  async fn extend_stored(
    &self,
    keys: &SemaphoreKeys,
    token: &str,
    ttl_ms: u64,
  ) -> Result<Option<Instant>> {
    let host = self.host()?;
    let sent = Instant::now();
    let renewed: i64 = host
      .eval(EXTEND.script(), &keys.all(), &[&token, &ttl_ms])
      .await?;
    Ok(if renewed == 1 {
      self.engine.lease_until(sent, ttl_ms)
    } else {
      None
    })
  }

  /// Permits in use, holders and fair waiters of `key`; leases that ran out are reclaimed
  /// first.
  pub async fn state(&self, key: &str) -> Result<SemaphoreState> {
    validate::key(key)?;
    self.engine.ensure_open()?;
    let host = self.host()?;
    let keys = SemaphoreKeys::new(&self.engine.redis_key(key));
    let reply: Vec<Value> = host
      .eval(STATE.script(), &keys.all(), &[&STATE_LIST_LIMIT])
      .await?;
    parse_state(reply).ok_or_else(|| unexpected(host, "state"))
  }
}

fn check_counts(permits: u64, count: u64) -> Result<()> {
  if count > permits {
    return Err(Error::invalid_argument(format!(
      "a semaphore of {permits} permits can never grant {count} at once"
    )));
  }
  Ok(())
}

fn unexpected(host: &Host, script: &str) -> Error {
  Error::new(
    ErrorKind::Redis,
    format!(
      "{}: unexpected reply to the semaphore {script} script",
      host.label()
    ),
  )
}

fn parse_state(reply: Vec<Value>) -> Option<SemaphoreState> {
  let int = |value: &Value| match value {
    Value::Int(number) => Some(*number),
    _ => None,
  };
  let text = |value: &Value| match value {
    Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
    Value::SimpleString(text) => Some(text.clone()),
    _ => None,
  };
  let [in_use, Value::Array(holders), Value::Array(queue), holder_count, queue_length, fence] =
    reply.as_slice()
  else {
    return None;
  };
  Some(SemaphoreState {
    in_use: int(in_use)?.max(0) as u64,
    holders: holders
      .chunks(3)
      .map(|entry| match entry {
        [token, permits, ttl] => Some(PermitHolder {
          token: text(token)?,
          permits: int(permits)?.max(0) as u64,
          ttl_ms: int(ttl)?,
        }),
        _ => None,
      })
      .collect::<Option<_>>()?,
    queue: queue.iter().map(text).collect::<Option<_>>()?,
    holder_count: int(holder_count)?.max(0) as u64,
    queue_length: int(queue_length)?.max(0) as u64,
    fence: int(fence)?,
  })
}

/// Permits held through a handle, as the watchdog renews and releases them.
struct PermitHold {
  semaphore: Arc<Semaphore>,
  keys: SemaphoreKeys,
  token: String,
}

impl Renewal for PermitHold {
  fn renew(&self, ttl_ms: u64) -> BoxFuture<'_, Result<Option<Instant>>> {
    Box::pin(
      self
        .semaphore
        .extend_stored(&self.keys, &self.token, ttl_ms),
    )
  }

  fn release(&self) -> BoxFuture<'_, Result<bool>> {
    Box::pin(self.semaphore.release_stored(&self.keys, &self.token, true))
  }

  fn as_any(&self) -> &dyn std::any::Any {
    self
  }

  fn has_release_call(&self) -> bool {
    true
  }

  fn release_call(&self) -> Option<ReleaseCall> {
    Some(ReleaseCall {
      call: self.semaphore.release_call(&self.keys, &self.token, true),
      all_held: 1,
    })
  }
}

impl Semaphore {
  /// The release of `token`'s permits (`held`), or of whatever it holds or waits for.
  fn release_call(&self, keys: &SemaphoreKeys, token: &str, held: bool) -> ScriptCall {
    let args = vec![token.to_owned(), keys.channel.clone()];
    if held {
      ScriptCall {
        lua: &RELEASE_HELD,
        keys: vec![keys.leases.clone(), keys.held.clone()],
        args,
      }
    } else {
      ScriptCall {
        lua: &RELEASE,
        keys: keys.all().map(str::to_owned).to_vec(),
        args,
      }
    }
  }
}

/// An acquire's first attempt on the event loop's sockets.
struct FirstPermits {
  semaphore: Arc<Semaphore>,
  keys: SemaphoreKeys,
  token: String,
  name: String,
  options: SemaphoreOptions,
  on_lost: LostCallback,
}

impl FirstAttempt for FirstPermits {
  fn call(&self) -> ScriptCall {
    ScriptCall {
      lua: &ACQUIRE,
      keys: self.keys.all().map(str::to_owned).to_vec(),
      args: Semaphore::acquire_args(&self.keys, &self.token, &self.options),
    }
  }

  fn decide(self: Box<Self>, reply: &Reply, sent: Instant) -> Decision {
    let lease_ms = self.options.acquire.lease_ms();
    match integers(reply).as_deref() {
      Some([1, fence, ..]) => {
        let Some(until) = self.semaphore.engine.lease_until(sent, lease_ms) else {
          return Decision::NotHeld(self);
        };
        self.semaphore.engine.stats().record(Event::Acquired);
        let FirstPermits {
          semaphore,
          keys,
          token,
          name,
          options,
          on_lost,
        } = *self;
        Decision::Held(semaphore.hold(keys, token, name, &options, (*fence, until), on_lost))
      }
      _ => Decision::NotHeld(self),
    }
  }

  fn undo(&self) -> ScriptCall {
    self.semaphore.release_call(&self.keys, &self.token, false)
  }
}
