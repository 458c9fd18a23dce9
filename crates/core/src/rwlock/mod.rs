//! A read-write lock: many readers or one writer. Writer-preferring: once a writer waits, new
//! readers wait behind it, so writers never starve; `fair` serves readers and writers strictly
//! in arrival order. Every reader has its own lease on Redis's clock, renewed by the watchdog,
//! so a crashed reader holds a writer back for at most its ttl. The write lock is the key's
//! plain token (as a mutex's is), and its fence comes from the counter a mutex on the same key
//! uses.

use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::mutex::keys::{own_suffix, side_key, slot_preserving_base, LockKeys, OWN};
use crate::validate;

const PRELUDE: &str = include_str!("scripts/prelude.lua");

fn with_prelude(body: &str) -> Lua {
  Lua::with_prelude(PRELUDE, body)
}

static READ: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/read.lua")));
static WRITE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/write.lua")));
static RELEASE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/release.lua")));
/// A reader's and a writer's release: no clock and no other key, which makes them as cheap as
/// a mutex's.
static RELEASE_READ: LazyLock<Lua> =
  LazyLock::new(|| Lua::new(include_str!("scripts/release_read.lua")));
static RELEASE_WRITE: LazyLock<Lua> =
  LazyLock::new(|| Lua::new(include_str!("scripts/release_write.lua")));
static EXTEND: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/extend.lua")));
static DOWNGRADE: LazyLock<Lua> =
  LazyLock::new(|| with_prelude(include_str!("scripts/downgrade.lua")));
static UPGRADE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/upgrade.lua")));
static STATE: LazyLock<Lua> = LazyLock::new(|| with_prelude(include_str!("scripts/state.lua")));
/// For operators: how many readers of each lock hold a running lease.
pub static LIVE_READERS: LazyLock<Lua> =
  LazyLock::new(|| Lua::new(include_str!("scripts/live_readers.lua")));

/// Most readers and queued waiters `state` lists; their counts are always exact.
pub const STATE_LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
  Read,
  Write,
}

impl Mode {
  fn flag(self) -> &'static str {
    match self {
      Mode::Read => "r",
      Mode::Write => "w",
    }
  }
}

/// The keys of one read-write lock, all in the hash slot of its name.
#[derive(Debug, Clone)]
pub struct RwKeys {
  pub lock: String,
  pub readers: String,
  pub writers: String,
  pub queue: String,
  pub liveness: String,
  pub arrivals: String,
  /// Shared with a mutex on the same key, as is the channel.
  pub fence: String,
  pub channel: String,
}

impl RwKeys {
  const READERS_SUFFIX: &'static str = ":relock:rw:readers";

  pub fn new(key: &str) -> RwKeys {
    let base = slot_preserving_base(key);
    let own = own_suffix(key);
    let side = |name: &str| side_key(&base, &["rw:", name, own]);
    RwKeys {
      lock: key.to_owned(),
      readers: side("readers"),
      writers: side("writers"),
      queue: side("queue"),
      liveness: side("liveness"),
      arrivals: side("arrivals"),
      fence: LockKeys::fence_of(&base),
      channel: LockKeys::channel_of(&base),
    }
  }

  /// The forms a readers' key takes: a name without a hash tag has its side keys under
  /// `{name}`, one with a tag under the name itself, and a name `{x}` ends them with its own
  /// suffix. Applied to a glob, they are the SCAN MATCH patterns that find the readers' keys
  /// of the locks whose names match it.
  pub fn readers_patterns(pattern: &str) -> [String; 3] {
    [
      format!("{{{pattern}}}{}", Self::READERS_SUFFIX),
      format!("{pattern}{}", Self::READERS_SUFFIX),
      format!("{pattern}{}{}", Self::READERS_SUFFIX, OWN),
    ]
  }

  /// The name of the lock whose readers' key is `readers` in the form of
  /// `readers_patterns(…)[form]`, if it is one (a pattern of one form can match the readers' key
  /// of a name in another form, which the glob itself need not match).
  pub fn name_of_readers(readers: &str, form: usize) -> Option<String> {
    let base = match form {
      2 => readers.strip_suffix(OWN)?,
      _ => readers,
    }
    .strip_suffix(Self::READERS_SUFFIX)?;
    let name = match form {
      0 => base.strip_prefix('{')?.strip_suffix('}')?,
      _ => base,
    };
    (RwKeys::new(name).readers == readers).then(|| name.to_owned())
  }

  /// The keys an acquire passes, as every key costs Redis a little on each call: a reader
  /// never takes a fence, and only a fair one counts arrivals.
  fn for_acquire(&self, mode: Mode, fair: bool) -> Vec<&str> {
    let all = self.all();
    let count = match (mode, fair) {
      (Mode::Write, _) => all.len(),
      (Mode::Read, true) => all.len() - 1,
      (Mode::Read, false) => all.len() - 2,
    };
    all[..count].to_vec()
  }

  /// In the order the scripts declare them.
  fn all(&self) -> [&str; 7] {
    [
      &self.lock,
      &self.readers,
      &self.writers,
      &self.queue,
      &self.liveness,
      &self.arrivals,
      &self.fence,
    ]
  }
}

/// A read-write lock's state, for callers and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct RwState {
  pub writer: Option<String>,
  pub writer_ttl_ms: Option<i64>,
  /// Readers with their ms left (at most [`STATE_LIST_LIMIT`]), soonest lease end first.
  pub readers: Vec<(String, i64)>,
  pub reader_count: u64,
  pub waiting_writers: u64,
  /// Fair waiters in queue order, each with its mode (at most [`STATE_LIST_LIMIT`]).
  pub queue: Vec<(Mode, String)>,
  pub queue_length: u64,
  pub fence: i64,
}

pub struct RwLock {
  engine: Arc<Engine>,
}

impl RwLock {
  pub fn new(engine: Arc<Engine>) -> RwLock {
    RwLock { engine }
  }

  fn host(&self) -> Result<&Arc<Host>> {
    self.engine.single_host("a read-write lock")
  }

  /// Waits until `key` is held in `mode` for this caller, then hands the hold to a guardian
  /// that renews it and reports its loss through `on_lost`. The checks are made now, the
  /// waiting in the returned future.
  pub fn begin_acquire(
    self: &Arc<Self>,
    key: &str,
    mode: Mode,
    options: AcquireOptions,
    cancel: CancellationToken,
    on_lost: LostCallback,
  ) -> impl std::future::Future<Output = Result<Arc<HeldLock>>> + Send + 'static {
    let rwlock = self.clone();
    let name = key.to_owned();
    let keys = RwKeys::new(&self.engine.redis_key(key));
    let checked = validate::key(key)
      .and_then(|()| self.engine.ensure_open())
      .and_then(|()| self.host().map(|_| ()));
    async move {
      checked?;
      let token = new_token();
      let clean_up = {
        let (rwlock, keys, token) = (rwlock.clone(), keys.clone(), token.clone());
        async move {
          let _ = rwlock.release_stored(&keys, &token, None).await;
        }
      };
      let granted = wait_for_grant(
        &rwlock.engine,
        &name,
        cancel,
        options.wait,
        &keys.channel,
        || rwlock.try_acquire(&keys, &token, mode, &options),
        clean_up,
      )
      .await?;
      Ok(rwlock.hold(keys, token, name, mode, &options, granted, on_lost))
    }
  }

  /// The first attempt of an acquire, for the event-loop path: `None` when this acquire waits
  /// on the native path from the start (fair, a single try, bad input, a closed client).
  pub fn first_attempt(
    self: &Arc<Self>,
    key: &str,
    mode: Mode,
    options: AcquireOptions,
    on_lost: LostCallback,
  ) -> Option<Box<dyn FirstAttempt>> {
    let eligible = !options.fair
      && options.wait != Some(Duration::ZERO)
      && validate::key(key).is_ok()
      && self.engine.ensure_open().is_ok()
      && self.host().is_ok();
    eligible.then(|| {
      Box::new(FirstHold {
        rwlock: self.clone(),
        keys: RwKeys::new(&self.engine.redis_key(key)),
        token: new_token(),
        name: key.to_owned(),
        mode,
        options,
        on_lost,
      }) as Box<dyn FirstAttempt>
    })
  }

  /// The arguments an acquire passes: as with the keys, only those its script reads (a plain
  /// reader reads its token and lease alone; the channel is for fair readers only).
  fn acquire_args(keys: &RwKeys, token: &str, mode: Mode, options: &AcquireOptions) -> Vec<String> {
    let mut args = vec![token.to_owned(), options.lease_ms().to_string()];
    if mode == Mode::Write || options.fair {
      args.push(if options.fair { "1" } else { "0" }.to_owned());
      args.push(FAIR_LIVENESS.as_millis().to_string());
    }
    if mode == Mode::Read && options.fair {
      args.push(keys.channel.clone());
    }
    args
  }

  #[allow(clippy::too_many_arguments)]
  fn hold(
    self: &Arc<Self>,
    keys: RwKeys,
    token: String,
    name: String,
    mode: Mode,
    options: &AcquireOptions,
    (fence, valid_until): (i64, Instant),
    on_lost: LostCallback,
  ) -> Arc<HeldLock> {
    let grant = Grant {
      token: token.clone(),
      fence,
      parts: Vec::new(),
      ttl_ms: options.ttl_ms,
      valid_until,
      watchdog: options.watchdog,
      max_hold: options.max_hold,
    };
    let hold = Box::new(RwHold {
      rwlock: self.clone(),
      keys,
      token,
      mode: tokio::sync::Mutex::new(mode),
      mode_known: AtomicBool::new(true),
    });
    HeldLock::start(self.engine.clone(), hold, grant, name, on_lost)
  }

  /// The release of `token`'s hold, or (`mode` unknown) of whatever it holds or waits for.
  fn release_call(&self, keys: &RwKeys, token: &str, mode: Option<Mode>) -> ScriptCall {
    let args = vec![token.to_owned(), keys.channel.clone()];
    match mode {
      Some(Mode::Read) => ScriptCall {
        lua: &RELEASE_READ,
        keys: vec![keys.readers.clone()],
        args,
      },
      Some(Mode::Write) => ScriptCall {
        lua: &RELEASE_WRITE,
        keys: vec![keys.lock.clone()],
        args,
      },
      None => ScriptCall {
        lua: &RELEASE,
        keys: keys.all().map(str::to_owned).to_vec(),
        args,
      },
    }
  }

  fn try_acquire<'a>(
    &'a self,
    keys: &'a RwKeys,
    token: &'a str,
    mode: Mode,
    options: &'a AcquireOptions,
  ) -> BoxFuture<'a, Result<Attempt<(i64, Instant)>>> {
    Box::pin(async move {
      let host = self.host()?;
      let sent = Instant::now();
      let lease_ms = options.lease_ms();
      let args = Self::acquire_args(keys, token, mode, options);
      let args: Vec<&dyn ToRedisArgsRef> =
        args.iter().map(|arg| arg as &dyn ToRedisArgsRef).collect();
      let reply: Vec<i64> = host
        .eval(
          acquire_script(mode).script(),
          &keys.for_acquire(mode, options.fair),
          &args,
        )
        .await?;
      match reply.as_slice() {
        [1, rest @ ..] => match self.engine.lease_until(sent, lease_ms) {
          Some(until) => Ok(Attempt::Taken((rest.first().copied().unwrap_or(0), until))),
          None => {
            self.release_stored(keys, token, None).await?;
            Ok(Attempt::Busy(Duration::ZERO))
          }
        },
        [0, recheck_ms] => {
          let recheck = recheck_after(Some(*recheck_ms));
          // A waiting writer and a fair waiter keep their place by checking in.
          let checks_in = options.fair || mode == Mode::Write;
          Ok(Attempt::Busy(if checks_in {
            recheck.min(FAIR_LIVENESS / 3)
          } else {
            recheck
          }))
        }
        _ => Err(unexpected(host, "acquire")),
      }
    })
  }

  async fn release_stored(&self, keys: &RwKeys, token: &str, mode: Option<Mode>) -> Result<bool> {
    let released: i64 = self
      .host()?
      .run(&self.release_call(keys, token, mode))
      .await?;
    Ok(released == 1)
  }

  async fn extend_stored(
    &self,
    keys: &RwKeys,
    token: &str,
    mode: Mode,
    ttl_ms: u64,
  ) -> Result<Option<Instant>> {
    let host = self.host()?;
    let sent = Instant::now();
    let renewed: i64 = host
      .eval(
        EXTEND.script(),
        &keys.all(),
        &[&token, &ttl_ms, &mode.flag()],
      )
      .await?;
    Ok(if renewed == 1 {
      self.engine.lease_until(sent, ttl_ms)
    } else {
      None
    })
  }

  fn hold_of<'h>(&self, held: &'h HeldLock) -> Result<&'h RwHold> {
    held
      .renewal()
      .as_any()
      .downcast_ref::<RwHold>()
      .ok_or_else(|| {
        Error::invalid_argument(format!(
          "'{}' is not held through a read-write lock",
          held.key()
        ))
      })
  }

  /// Turns a write hold into a read hold without letting another writer in between; the
  /// handle stays the same and keeps its fence.
  pub async fn downgrade(&self, held: &HeldLock) -> Result<()> {
    let hold = self.hold_of(held)?;
    self.engine.ensure_open()?;
    let mut mode = hold.mode.lock().await;
    if *mode == Mode::Read {
      return Err(Error::invalid_argument(format!(
        "'{}' is held for reading already",
        held.key()
      )));
    }
    held.ensure_held()?;
    let host = self.host()?;
    let done: i64 = hold
      .change_mode(host.eval(
        DOWNGRADE.script(),
        &hold.keys.all(),
        &[&hold.token, &held.ttl_ms(), &hold.keys.channel],
      ))
      .await?;
    if done != 1 {
      return Err(lost(held, "before it could be downgraded"));
    }
    *mode = Mode::Read;
    Ok(())
  }

  /// Turns a read hold into the write hold, only if this caller is the only reader; the handle
  /// stays the same and gets a new fence.
  pub async fn upgrade(&self, held: &HeldLock) -> Result<i64> {
    let hold = self.hold_of(held)?;
    self.engine.ensure_open()?;
    let mut mode = hold.mode.lock().await;
    if *mode == Mode::Write {
      return Err(Error::invalid_argument(format!(
        "'{}' is held for writing already",
        held.key()
      )));
    }
    held.ensure_held()?;
    let host = self.host()?;
    let reply: Vec<i64> = hold
      .change_mode(host.eval(
        UPGRADE.script(),
        &hold.keys.all(),
        &[&hold.token, &held.ttl_ms()],
      ))
      .await?;
    match reply.as_slice() {
      [1, fence] => {
        *mode = Mode::Write;
        held.set_fence(*fence);
        Ok(*fence)
      }
      [0, others] => Err(Error::new(
        ErrorKind::UpgradeRefused,
        format!(
          "'{}' cannot be upgraded to a write lock: {others} other reader(s) hold it; only the only reader can upgrade (release and take the write lock instead)",
          held.key()
        ),
      )),
      [-1] => Err(Error::new(
        ErrorKind::UpgradeRefused,
        format!(
          "'{}' cannot be upgraded to a write lock: another client holds the key as a plain lock",
          held.key()
        ),
      )),
      [-2] => Err(lost(held, "before it could be upgraded")),
      _ => Err(unexpected(host, "upgrade")),
    }
  }

  /// Writer, readers and waiters of `key`; leases that ran out are dropped first.
  pub async fn state(&self, key: &str) -> Result<RwState> {
    validate::key(key)?;
    self.engine.ensure_open()?;
    let host = self.host()?;
    let keys = RwKeys::new(&self.engine.redis_key(key));
    let reply: Vec<Value> = host
      .eval(STATE.script(), &keys.all(), &[&STATE_LIST_LIMIT])
      .await?;
    parse_state(reply).ok_or_else(|| unexpected(host, "state"))
  }
}

fn lost(held: &HeldLock, when: &str) -> Error {
  Error::new(
    ErrorKind::LockLost,
    format!("the lock on '{}' was lost {when}", held.key()),
  )
}

fn unexpected(host: &Host, script: &str) -> Error {
  Error::new(
    ErrorKind::Redis,
    format!(
      "{}: unexpected reply to the read-write lock {script} script",
      host.label()
    ),
  )
}

fn parse_state(reply: Vec<Value>) -> Option<RwState> {
  let int = |value: &Value| match value {
    Value::Int(number) => Some(*number),
    _ => None,
  };
  let text = |value: &Value| match value {
    Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
    Value::SimpleString(text) => Some(text.clone()),
    _ => None,
  };
  let [writer, writer_ttl, Value::Array(readers), waiting_writers, Value::Array(queue), reader_count, queue_length, fence] =
    reply.as_slice()
  else {
    return None;
  };
  let writer = text(writer);
  Some(RwState {
    writer_ttl_ms: writer.as_ref().and(int(writer_ttl)).filter(|ttl| *ttl >= 0),
    writer,
    readers: readers
      .chunks(2)
      .map(|entry| match entry {
        [token, ttl] => Some((text(token)?, int(ttl)?)),
        _ => None,
      })
      .collect::<Option<_>>()?,
    reader_count: int(reader_count)?.max(0) as u64,
    waiting_writers: int(waiting_writers)?.max(0) as u64,
    queue: queue
      .iter()
      .map(|member| {
        let member = text(member)?;
        let mode = if member.starts_with('w') {
          Mode::Write
        } else {
          Mode::Read
        };
        Some((mode, member.get(1..)?.to_owned()))
      })
      .collect::<Option<_>>()?,
    queue_length: int(queue_length)?.max(0) as u64,
    fence: int(fence)?,
  })
}

/// A read or write hold through a handle, as the watchdog renews and releases it. Its mode
/// changes only under the lock, so a renewal never renews the mode the hold just left.
struct RwHold {
  rwlock: Arc<RwLock>,
  keys: RwKeys,
  token: String,
  mode: tokio::sync::Mutex<Mode>,
  /// False once an upgrade or downgrade went unanswered: it may have run, so `mode` may be the
  /// one the hold left, and only the release that fits every mode is sure to end it.
  mode_known: AtomicBool,
}

impl RwHold {
  /// The mode to release in, if it is known now (see `mode_known`).
  fn mode_for_release(&self, mode: Mode) -> Option<Mode> {
    self.mode_known.load(Ordering::Acquire).then_some(mode)
  }

  /// An upgrade's or downgrade's script call: a call whose answer never came makes the mode
  /// unknown.
  async fn change_mode<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let answer = call.await;
    if answer.is_err() {
      self.mode_known.store(false, Ordering::Release);
    }
    answer
  }
}

fn acquire_script(mode: Mode) -> &'static Lua {
  match mode {
    Mode::Read => &READ,
    Mode::Write => &WRITE,
  }
}

/// An acquire's first attempt on the event loop's sockets.
struct FirstHold {
  rwlock: Arc<RwLock>,
  keys: RwKeys,
  token: String,
  name: String,
  mode: Mode,
  options: AcquireOptions,
  on_lost: LostCallback,
}

impl FirstAttempt for FirstHold {
  fn call(&self) -> ScriptCall {
    ScriptCall {
      lua: acquire_script(self.mode),
      keys: self
        .keys
        .for_acquire(self.mode, self.options.fair)
        .into_iter()
        .map(str::to_owned)
        .collect(),
      args: RwLock::acquire_args(&self.keys, &self.token, self.mode, &self.options),
    }
  }

  fn decide(self: Box<Self>, reply: &Reply, sent: Instant) -> Decision {
    let lease_ms = self.options.lease_ms();
    match integers(reply).as_deref() {
      Some([1, rest @ ..]) => {
        let Some(until) = self.rwlock.engine.lease_until(sent, lease_ms) else {
          return Decision::NotHeld(self);
        };
        self.rwlock.engine.stats().record(Event::Acquired);
        let fence = rest.first().copied().unwrap_or(0);
        let FirstHold {
          rwlock,
          keys,
          token,
          name,
          mode,
          options,
          on_lost,
        } = *self;
        Decision::Held(rwlock.hold(keys, token, name, mode, &options, (fence, until), on_lost))
      }
      _ => Decision::NotHeld(self),
    }
  }

  fn undo(&self) -> ScriptCall {
    self.rwlock.release_call(&self.keys, &self.token, None)
  }
}

impl Renewal for RwHold {
  fn renew(&self, ttl_ms: u64) -> BoxFuture<'_, Result<Option<Instant>>> {
    Box::pin(async move {
      let mode = self.mode.lock().await;
      self
        .rwlock
        .extend_stored(&self.keys, &self.token, *mode, ttl_ms)
        .await
    })
  }

  fn release(&self) -> BoxFuture<'_, Result<bool>> {
    Box::pin(async move {
      let mode = self.mode.lock().await;
      self
        .rwlock
        .release_stored(&self.keys, &self.token, self.mode_for_release(*mode))
        .await
    })
  }

  fn as_any(&self) -> &dyn std::any::Any {
    self
  }

  fn has_release_call(&self) -> bool {
    true
  }

  fn release_call(&self) -> Option<ReleaseCall> {
    // The release has begun, so no upgrade or downgrade starts any more; one already under way
    // (or a renewal) holds the mode, which is then not known: the release that fits every mode.
    let mode = self
      .mode
      .try_lock()
      .ok()
      .and_then(|mode| self.mode_for_release(*mode));
    Some(ReleaseCall {
      call: self.rwlock.release_call(&self.keys, &self.token, mode),
      all_held: 1,
    })
  }
}

#[cfg(test)]
mod tests {
  use super::RwKeys;

  #[test]
  fn a_readers_key_names_its_lock() {
    // Each name is found in exactly one form: the one its readers' key has.
    let form_of = |name: &str| match name {
      "doc" | "a{}b" | "{}" => 0,
      "{doc}" | "{{}}" => 2,
      _ => 1,
    };
    for name in [
      "doc",
      "{doc}",
      "shop{7}:page",
      "{a{b}c}",
      "a{}b",
      "p:{x}",
      "{}",
      "{{}}",
    ] {
      let readers = RwKeys::new(name).readers;
      for form in 0..3 {
        assert_eq!(
          RwKeys::name_of_readers(&readers, form).as_deref(),
          (form == form_of(name)).then_some(name),
          "{readers} in form {form}"
        );
      }
    }
    // `doc` and `{doc}` share a base, never their readers.
    assert_eq!(
      RwKeys::name_of_readers("{doc}:relock:rw:readers", 0).as_deref(),
      Some("doc")
    );
    assert_eq!(RwKeys::name_of_readers("{doc}:relock:rw:writers", 0), None);
    assert_eq!(
      RwKeys::name_of_readers("doc:relock:rw:readers", 1),
      None,
      "an untagged base is never a side key"
    );
    assert_eq!(
      RwKeys::name_of_readers("{doc}:relock:rw:readers:own", 2).as_deref(),
      Some("{doc}")
    );
    let [wrapped, tagged, braced] = RwKeys::readers_patterns("docs:*");
    assert_eq!(wrapped, "{docs:*}:relock:rw:readers");
    assert_eq!(tagged, "docs:*:relock:rw:readers");
    assert_eq!(braced, "docs:*:relock:rw:readers:own");
  }
}
