//! `lock`, `unlock`, `extend`, and the first attempt of `acquire` and the release of its
//! handle, for a caller that owns the sockets (Node's own, on its event
//! loop), so that a call crosses no thread: the caller hands in calls and what its sockets did,
//! and takes out bytes to write, sockets to open and settled calls. No thread, timer or I/O
//! here. The decisions are the mutex's own (`next_try`, `undo_wakes`, quorum and validity);
//! only the transport differs from the tokio path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acquire::{AcquireOptions, MutexHold};
use super::keys::{
  release_call, LockKeys, Wake, ACQUIRE, ACQUIRE_LUA, EXTEND, EXTEND_LUA, RELEASE, RELEASE_LUA,
};
use super::{extend_verdict, next_try, release_verdict, undo_wakes, Mutex};
use crate::engine::new_token;
use crate::engine::quorum::{self, Tally, Vote};
use crate::engine::resp::Reply;
use crate::engine::script::{self, Decision, FirstAttempt, OneCall, ScriptCall};
use crate::engine::stats::Event;
use crate::engine::watchdog::{AfterRelease, Grant, HeldLock, LostCallback, Release};
use crate::engine::wire::{Action, Outcome, Wire};
use crate::error::{Error, ErrorKind, Result};
use crate::options::RetryPolicy;
use crate::validate;

/// How a call ended, or that it is to be tried again after a pause (which the caller times).
pub enum Settled {
  Token(Option<String>),
  /// A token and its validity in ms, or `None` when the key is held.
  Lease(Option<(String, f64)>),
  Flag(bool),
  Failed(Error),
  RetryAfter(Duration),
  Held(Arc<HeldLock>),
  /// The first attempt of an `acquire` did not take the lock: wait on the native path.
  Wait,
}

/// One attempt's request, as sent to every host (and sent again, in full, to a host that lost
/// the script, whether or not the call still waits for that host).
struct Request {
  command: Command,
  /// The key as stored in Redis; the side keys are named only for the scripts that use them.
  key: Arc<str>,
  token: Arc<str>,
  ttl_ms: u64,
}

#[derive(Clone)]
enum Command {
  Set,
  Acquire,
  Release(Wake),
  Extend,
  /// A call of another primitive's script on the single host.
  Script(Arc<ScriptCall>),
}

/// What a reply answers.
enum Answer {
  /// A host's vote in a call's attempt.
  Vote {
    call: u32,
    attempt: u64,
    host: usize,
    request: Arc<Request>,
  },
  /// A release sent to undo an attempt (or a lock taken while closing); nobody waits for it.
  Undo { host: usize, request: Arc<Request> },
}

enum Op {
  Lock {
    with_validity: bool,
    retry: RetryPolicy,
    budget_end: Option<Instant>,
  },
  Unlock,
  Extend,
  Acquire {
    options: AcquireOptions,
    /// The key as the caller named it.
    name: String,
    on_lost: Option<LostCallback>,
  },
  Release {
    held: Arc<HeldLock>,
    after: AfterRelease,
  },
  /// The first attempt of another primitive's acquire.
  FirstAttempt {
    attempt: Box<dyn FirstAttempt>,
  },
  /// A whole call of another primitive, answered by one script.
  OneCall {
    one: Box<dyn OneCall>,
  },
  /// The release of another primitive's hold.
  ReleaseHold {
    held: Arc<HeldLock>,
    after: AfterRelease,
    script: Arc<ScriptCall>,
    /// The reply when every part of the hold was held.
    all_held: i64,
  },
}

struct Call {
  op: Op,
  /// The current attempt's request (each attempt of a `lock` has its own token).
  request: Arc<Request>,
  attempt: u64,
  started: Instant,
  deadline: Instant,
  tally: Tally<()>,
  answered: Vec<bool>,
  /// Hosts whose connection failed before the request was written: it cannot have run.
  unsent: Vec<bool>,
  /// The fencing number the host granted with (an `acquire`).
  fence: i64,
  /// Between a `lock` attempt and the next, while the caller waits out the pause.
  pausing: bool,
  /// The reply of a primitive's script call (one host).
  reply: Option<Reply>,
}

pub struct Direct {
  mutex: Arc<Mutex>,
  wire: Wire<Answer>,
  calls: HashMap<u32, Call>,
  settled: Vec<(u32, Settled)>,
  release_sha: String,
  extend_sha: String,
  acquire_sha: String,
}

/// What the caller must do after an event.
pub struct Turn {
  pub actions: Vec<Action>,
  pub settled: Vec<(u32, Settled)>,
  /// When the earliest call in flight times out, if any is.
  pub next_deadline: Option<Instant>,
  /// Whether a call is in flight: its promise is pending, so the sockets keep the process
  /// alive. (A release sent to undo an attempt does not: nobody waits for it.)
  pub busy: bool,
}

impl Direct {
  /// `None` unless every host is a plain connection named by URL (no Sentinel, Cluster, TLS,
  /// or replica acknowledgement): those keep the tokio path.
  pub fn new(mutex: Arc<Mutex>) -> Option<Direct> {
    let engine = mutex.engine();
    if engine.options().replica_ack.is_some() {
      return None;
    }
    let endpoints = engine
      .hosts()
      .iter()
      .map(|host| host.endpoint())
      .collect::<Option<Vec<_>>>()?;
    Some(Direct {
      wire: Wire::new(
        &endpoints,
        &[
          &[b"SCRIPT", b"LOAD", RELEASE_LUA.as_bytes()],
          &[b"SCRIPT", b"LOAD", EXTEND_LUA.as_bytes()],
          &[b"SCRIPT", b"LOAD", ACQUIRE_LUA.as_bytes()],
        ],
      ),
      calls: HashMap::new(),
      settled: Vec::new(),
      release_sha: RELEASE.sha().to_owned(),
      extend_sha: EXTEND.get_hash().to_owned(),
      acquire_sha: ACQUIRE.get_hash().to_owned(),
      mutex,
    })
  }

  /// Takes `key` for `ttl_ms` with a fresh token, retrying as `retry` says (the caller waits
  /// out each [`Settled::RetryAfter`] and then calls [`Direct::retry`]).
  pub fn lock(&mut self, id: u32, key: &str, ttl_ms: u64, retry: RetryPolicy, with_validity: bool) {
    // As on the native path: bad input is not counted, a closed client is.
    if let Err(invalid) = validate::key(key) {
      self.settled.push((id, Settled::Failed(invalid)));
      return;
    }
    if let Err(closed) = self.mutex.engine().ensure_open() {
      self.finish_lock(id, with_validity, Err(closed));
      return;
    }
    self.mutex.engine().check_hosts_once();
    let now = Instant::now();
    let budget_end = retry.budget.map(|budget| now + budget);
    let key = Arc::from(self.mutex.engine().redis_key(key));
    self.start(
      id,
      Op::Lock {
        with_validity,
        retry,
        budget_end,
      },
      key,
      Arc::from(new_token()),
      ttl_ms,
    );
  }

  /// The next attempt of a `lock` whose pause is over.
  pub fn retry(&mut self, id: u32) {
    let Some(mut call) = self.calls.remove(&id) else {
      return;
    };
    if let Err(closed) = self.mutex.engine().ensure_open() {
      if let Op::Lock { with_validity, .. } = call.op {
        self.finish_lock(id, with_validity, Err(closed));
      }
      return;
    }
    call.request = Arc::new(Request {
      command: call.request.command.clone(),
      token: Arc::from(new_token()),
      key: call.request.key.clone(),
      ttl_ms: call.request.ttl_ms,
    });
    call.attempt += 1;
    self.begin(id, call);
  }

  pub fn unlock(&mut self, id: u32, key: &str, token: &str) {
    let checked = validate::key(key)
      .and_then(|()| validate::token(token))
      .and_then(|()| self.mutex.engine().ensure_open());
    if let Err(error) = checked {
      self.settled.push((id, Settled::Failed(error)));
      return;
    }
    let key = Arc::from(self.mutex.engine().redis_key(key));
    self.start(id, Op::Unlock, key, Arc::from(token), 0);
  }

  pub fn extend(&mut self, id: u32, key: &str, token: &str, ttl_ms: u64) {
    let checked = validate::key(key)
      .and_then(|()| validate::token(token))
      .and_then(|()| self.mutex.engine().ensure_open());
    if let Err(error) = checked {
      self.settled.push((id, Settled::Failed(error)));
      return;
    }
    let key = Arc::from(self.mutex.engine().redis_key(key));
    self.start(id, Op::Extend, key, Arc::from(token), ttl_ms);
  }

  /// The first attempt of a plain `acquire` on a single host, when it is one: `false` when
  /// the wait belongs to the native path from the start (fair, several hosts, a single try).
  pub fn acquire(
    &mut self,
    id: u32,
    key: &str,
    options: AcquireOptions,
    on_lost: LostCallback,
  ) -> bool {
    let engine = self.mutex.engine();
    if options.fair || engine.hosts().len() != 1 || options.wait == Some(Duration::ZERO) {
      return false;
    }
    if validate::key(key).is_err() || engine.ensure_open().is_err() {
      return false;
    }
    let stored = Arc::from(engine.redis_key(key));
    let lease_ms = options.lease_ms();
    let op = Op::Acquire {
      options,
      name: key.to_owned(),
      on_lost: Some(on_lost),
    };
    self.start(id, op, stored, Arc::from(new_token()), lease_ms);
    true
  }

  /// The first attempt of another primitive's acquire (a semaphore, a read-write lock), when
  /// the primitive offers one for this call.
  pub fn first_attempt(&mut self, id: u32, attempt: Option<Box<dyn FirstAttempt>>) -> bool {
    let Some(attempt) = attempt else {
      return false;
    };
    let op = Op::FirstAttempt { attempt };
    self.start(id, op, Arc::from(""), Arc::from(""), 0);
    true
  }

  /// A whole call of another primitive answered by one script (a multi-key `lock` or
  /// `unlock`), when the primitive offers one for this call.
  pub fn one_call(&mut self, id: u32, one: Option<Box<dyn OneCall>>) -> bool {
    let Some(one) = one else {
      return false;
    };
    self.start(id, Op::OneCall { one }, Arc::from(""), Arc::from(""), 0);
    true
  }

  /// Releases a lock held through a handle: a mutex's, or another primitive's whose release is
  /// one script call.
  pub fn release(&mut self, id: u32, held: Arc<HeldLock>) {
    let renewal = held.renewal();
    if !renewal.has_release_call() && !renewal.as_any().is::<MutexHold>() {
      let error = Error::new(
        ErrorKind::Internal,
        format!(
          "the hold of '{}' is released by the native client",
          held.key()
        ),
      );
      self.settled.push((id, Settled::Failed(error)));
      return;
    }
    match held.begin_release() {
      Release::Answered(answer) => {
        let settled = match answer {
          Ok(flag) => Settled::Flag(flag),
          Err(error) => Settled::Failed(error),
        };
        self.settled.push((id, settled));
      }
      Release::Send(after) => {
        let key = Arc::from(self.mutex.engine().redis_key(held.key()));
        let token: Arc<str> = Arc::from(held.token());
        // Only now: the release has begun, so the hold no longer changes under the call.
        let op = if let Some(release) = held.renewal().release_call() {
          Op::ReleaseHold {
            held,
            after,
            script: Arc::new(release.call),
            all_held: release.all_held,
          }
        } else {
          Op::Release { held, after }
        };
        self.start(id, op, key, token, 0);
      }
    }
  }

  fn start(&mut self, id: u32, op: Op, key: Arc<str>, token: Arc<str>, ttl_ms: u64) {
    let hosts = self.mutex.engine().hosts().len();
    let command = match &op {
      Op::Lock { .. } => Command::Set,
      Op::Acquire { .. } => Command::Acquire,
      Op::Unlock | Op::Release { .. } => Command::Release(Wake::Waiters),
      Op::Extend => Command::Extend,
      Op::FirstAttempt { attempt } => Command::Script(Arc::new(attempt.call())),
      Op::OneCall { one } => Command::Script(Arc::new(one.call())),
      Op::ReleaseHold { script, .. } => Command::Script(script.clone()),
    };
    let call = Call {
      op,
      request: Arc::new(Request {
        command,
        key,
        token,
        ttl_ms,
      }),
      attempt: 0,
      started: Instant::now(),
      deadline: Instant::now(),
      tally: Tally::new(hosts),
      answered: vec![false; hosts],
      unsent: vec![false; hosts],
      fence: 0,
      pausing: false,
      reply: None,
    };
    self.begin(id, call);
  }

  /// Sends the call's current attempt to every host.
  fn begin(&mut self, id: u32, mut call: Call) {
    let engine = self.mutex.engine();
    let options = engine.options();
    let hosts = engine.hosts().len();
    call.started = Instant::now();
    call.pausing = false;
    call.tally = Tally::new(hosts);
    call.answered = vec![false; hosts];
    call.unsent = vec![false; hosts];
    call.fence = 0;
    call.reply = None;
    let all_open = (0..hosts).all(|host| self.wire.is_open(host));
    // As on the tokio path: a call may first have to connect, then gets its command time.
    let bound = if all_open {
      options.command_timeout
    } else {
      options.connect_timeout + options.command_timeout
    };
    call.deadline = call.started + bound;
    let request = call.request.clone();
    for host in 0..hosts {
      let answer = Answer::Vote {
        call: id,
        attempt: call.attempt,
        host,
        request: request.clone(),
      };
      self.send(host, &request, answer, false);
    }
    self.calls.insert(id, call);
  }

  /// Queues `request` to `host` (by EVAL instead of EVALSHA when the server lost the script).
  fn send(&mut self, host: usize, request: &Request, answer: Answer, full_script: bool) {
    let key = request.key.as_bytes();
    let token = request.token.as_bytes();
    let ttl = request.ttl_ms.to_string();
    match &request.command {
      Command::Set => self.wire.send(
        host,
        &[b"SET", key, token, b"NX", b"PX", ttl.as_bytes()],
        answer,
      ),
      Command::Extend => {
        let (command, script) = script_call(full_script, &self.extend_sha, EXTEND_LUA);
        self.wire.send(
          host,
          &[command, script, b"1", key, token, ttl.as_bytes()],
          answer,
        );
      }
      Command::Acquire => {
        let keys = LockKeys::new(&request.key);
        let (command, script) = script_call(full_script, &self.acquire_sha, ACQUIRE_LUA);
        let fence = keys.fence.as_bytes();
        self.wire.send(
          host,
          &[command, script, b"2", key, fence, token, ttl.as_bytes()],
          answer,
        );
      }
      Command::Script(call) => {
        let (command, script) = script_call(full_script, call.lua.sha(), call.lua.source());
        let count = call.keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![command, script, count.as_bytes()];
        parts.extend(call.keys.iter().map(|key| key.as_bytes()));
        parts.extend(call.args.iter().map(|arg| arg.as_bytes()));
        self.wire.send(host, &parts, answer);
      }
      Command::Release(wake) => {
        let call = release_call(&[LockKeys::new(&request.key)], &request.token, *wake);
        let (command, script) = script_call(full_script, &self.release_sha, RELEASE_LUA);
        let mut parts: Vec<&[u8]> = vec![command, script, b"4"];
        parts.extend(call.keys.iter().map(|key| key.as_bytes()));
        parts.extend(call.args.iter().map(|arg| arg.as_bytes()));
        self.wire.send(host, &parts, answer);
      }
    }
  }

  /// The caller's socket to `host` is connected.
  pub fn connected(&mut self, host: usize) {
    self.wire.connected(host);
  }

  /// The caller's socket to `host` closed or failed, with `error` (a connection error, or a
  /// timeout of the connect).
  pub fn closed(&mut self, host: usize, error: Error) {
    let error = self.mutex.engine().hosts()[host].observe::<()>(Err(error));
    let error = error.expect_err("a failure");
    let lost = self.wire.closed(host, &error);
    for (answer, outcome) in lost {
      self.answered(answer, outcome);
    }
  }

  pub fn received(&mut self, host: usize, bytes: &[u8]) -> bool {
    let engine = self.mutex.engine().clone();
    let read = self.wire.received(&engine.hosts()[host], host, bytes);
    for (answer, outcome) in read.replies {
      self.answered(answer, outcome);
    }
    read.close
  }

  /// Fails the hosts that have not answered calls whose time is up.
  pub fn expire(&mut self, now: Instant) {
    let due: Vec<u32> = self
      .calls
      .iter()
      .filter(|(_, call)| !call.pausing && call.deadline <= now)
      .map(|(id, _)| *id)
      .collect();
    for id in due {
      let Some(call) = self.calls.get_mut(&id) else {
        continue;
      };
      let hosts = self.mutex.engine().hosts();
      for (host, answered) in call.answered.iter_mut().enumerate() {
        if !*answered {
          *answered = true;
          let failure = hosts[host].observe::<()>(Err(hosts[host].timed_out()));
          call
            .tally
            .record(host, Vote::Failed(failure.expect_err("a failure")));
        }
      }
      self.finish(id);
    }
  }

  fn answered(&mut self, answer: Answer, outcome: Outcome) {
    let no_script =
      matches!(&outcome, Outcome::Refused(error) if error.message().contains(": NOSCRIPT"));
    match answer {
      Answer::Undo { host, request } => {
        if no_script {
          let again = Answer::Undo {
            host,
            request: request.clone(),
          };
          self.send(host, &request, again, true);
        }
      }
      Answer::Vote {
        call: id,
        attempt,
        host,
        request,
      } => {
        if no_script {
          let again = Answer::Vote {
            call: id,
            attempt,
            host,
            request: request.clone(),
          };
          self.send(host, &request, again, true);
          return;
        }
        let Some(mut call) = self.calls.remove(&id) else {
          return;
        };
        if call.pausing || call.attempt != attempt || call.answered[host] {
          self.calls.insert(id, call);
          return;
        }
        let outcome = match outcome {
          Outcome::Reply(reply) => Ok(reply),
          Outcome::Refused(error) => Err(error),
          Outcome::Lost { error, sent } => {
            call.unsent[host] = !sent;
            Err(error)
          }
        };
        let outcome = self.mutex.engine().hosts()[host].observe(outcome);
        let vote = match (&call.op, outcome) {
          (_, Err(error)) => Vote::Failed(error),
          (Op::FirstAttempt { .. } | Op::ReleaseHold { .. } | Op::OneCall { .. }, Ok(reply)) => {
            call.reply = Some(reply);
            Vote::Yes(())
          }
          (Op::Acquire { .. }, Ok(Reply::Array(Some(items)))) => {
            match (items.first(), items.get(1)) {
              (Some(Reply::Integer(1)), Some(Reply::Integer(fence))) => {
                call.fence = *fence;
                Vote::Yes(())
              }
              (_, Some(Reply::Integer(ttl))) => Vote::No(*ttl),
              _ => Vote::No(-1),
            }
          }
          (Op::Lock { .. }, Ok(Reply::Status(_))) => Vote::Yes(()),
          (Op::Lock { .. }, Ok(Reply::Bulk(None))) => Vote::No(-1),
          (_, Ok(Reply::Integer(1))) => Vote::Yes(()),
          (_, Ok(Reply::Integer(_))) => Vote::No(-1),
          (_, Ok(other)) => Vote::Failed(Error::new(
            ErrorKind::Redis,
            format!(
              "{}: unexpected reply {other:?}",
              self.mutex.engine().hosts()[host].label()
            ),
          )),
        };
        call.answered[host] = true;
        call.tally.record(host, vote);
        let decided = call.tally.decided();
        self.calls.insert(id, call);
        if decided {
          self.finish(id);
        }
      }
    }
  }

  fn finish(&mut self, id: u32) {
    let Some(call) = self.calls.remove(&id) else {
      return;
    };
    match call.op {
      Op::Lock { .. } => self.finish_attempt(id, call),
      Op::Acquire { .. } => self.finish_acquire(id, call),
      Op::FirstAttempt { .. } => self.finish_first_attempt(id, call),
      Op::OneCall { .. } => self.finish_one_call(id, call),
      Op::ReleaseHold {
        held,
        after,
        all_held,
        ..
      } => {
        let released = match call.reply {
          Some(Reply::Integer(held_parts)) => Ok(held_parts == all_held),
          Some(other) => Err(Error::new(
            ErrorKind::Redis,
            format!(
              "{}: unexpected reply {other:?} to a release",
              self.mutex.engine().hosts()[0].label()
            ),
          )),
          None => Err(call.tally.failure()),
        };
        let settled = match held.finish_release(after, released) {
          Ok(flag) => Settled::Flag(flag),
          Err(error) => Settled::Failed(error),
        };
        self.settled.push((id, settled));
      }
      Op::Release { held, after } => {
        let settled = match held.finish_release(after, release_verdict(call.tally)) {
          Ok(flag) => Settled::Flag(flag),
          Err(error) => Settled::Failed(error),
        };
        self.settled.push((id, settled));
      }
      Op::Unlock => {
        let outcome = release_verdict(call.tally);
        self.settle_counted(id, outcome.map(Settled::Flag), |settled| {
          matches!(settled, Settled::Flag(true)).then_some(Event::Unlocked)
        });
      }
      Op::Extend => {
        let drift = self.mutex.engine().options().drift_factor;
        let request = &call.request;
        let renewed = extend_verdict(
          call.tally,
          &request.key,
          request.ttl_ms,
          call.started,
          drift,
        );
        let settled = match renewed {
          Ok(until) => Settled::Flag(until.is_some()),
          Err(error) => Settled::Failed(error),
        };
        self.settled.push((id, settled));
      }
    }
  }

  /// Decides one `lock` attempt: a lease, or the undo of what it took and then a retry or the
  /// answer.
  fn finish_attempt(&mut self, id: u32, mut call: Call) {
    let engine = self.mutex.engine().clone();
    let ttl = Duration::from_millis(call.request.ttl_ms);
    if call.tally.has_quorum() {
      if let Some(left) =
        quorum::validity(ttl, call.started.elapsed(), engine.options().drift_factor)
      {
        let Op::Lock { with_validity, .. } = call.op else {
          unreachable!("a lock")
        };
        if engine.is_closed() {
          // Taken while the client closed: nobody will release it, so do it now.
          self.undo_after(&call, &vec![Wake::Waiters; call.tally.hosts]);
          self.finish_lock(id, with_validity, Err(Error::closed()));
        } else {
          let lease = (call.request.token.to_string(), left.as_secs_f64() * 1000.0);
          self.finish_lock(id, with_validity, Ok(Some(lease)));
        }
        return;
      }
    }
    // Every host but those that refused may hold the attempt (or will: a late answer).
    self.undo_after(&call, &undo_wakes(&call.tally));
    let tally = std::mem::replace(&mut call.tally, Tally::new(0));
    let outcome: Result<()> = if tally.has_quorum() {
      Err(Error::new(
        ErrorKind::ValidityExpired,
        format!(
          "a quorum took '{}', but after {} ms no time was left on its {} ms ttl; it was released",
          call.request.key,
          call.started.elapsed().as_millis(),
          call.request.ttl_ms
        ),
      ))
    } else if tally.refused() {
      Ok(())
    } else {
      Err(tally.failure())
    };
    let Op::Lock {
      with_validity,
      ref retry,
      budget_end,
    } = call.op
    else {
      unreachable!("a lock")
    };
    let pause = next_try(
      engine.options(),
      &call.request.key,
      outcome.as_ref().map(|_| ()),
      retry,
      call.attempt,
      budget_end,
    );
    match pause {
      Some(pause) => {
        self.settled.push((id, Settled::RetryAfter(pause)));
        call.pausing = true;
        self.calls.insert(id, call);
      }
      None => self.finish_lock(id, with_validity, outcome.map(|()| None)),
    }
  }

  /// Takes the lock if the first attempt finds it free; otherwise undoes what the attempt may
  /// have left and hands the wait to the native path.
  fn finish_acquire(&mut self, id: u32, call: Call) {
    let engine = self.mutex.engine().clone();
    let Op::Acquire {
      options,
      name,
      on_lost,
    } = call.op
    else {
      unreachable!("an acquire")
    };
    let lease_ms = options.lease_ms();
    let tally = &call.tally;
    let left = quorum::validity(
      Duration::from_millis(lease_ms),
      call.started.elapsed(),
      engine.options().drift_factor,
    );
    let (Some(left), Some(on_lost), true, false) =
      (left, on_lost, tally.has_quorum(), engine.is_closed())
    else {
      let wakes = undo_wakes(tally);
      let unanswered = Call {
        op: Op::Unlock,
        ..call
      };
      self.undo_after(&unanswered, &wakes);
      self.settled.push((id, Settled::Wait));
      return;
    };
    let grant = Grant {
      token: call.request.token.to_string(),
      fence: call.fence,
      parts: Vec::new(),
      ttl_ms: options.ttl_ms,
      valid_until: Instant::now() + left,
      watchdog: options.watchdog,
      max_hold: options.max_hold,
    };
    let hold = Box::new(MutexHold {
      mutex: self.mutex.clone(),
      key: call.request.key.to_string(),
      token: call.request.token.to_string(),
    });
    engine.stats().record(Event::Acquired);
    let held = HeldLock::start(engine, hold, grant, name, on_lost);
    self.settled.push((id, Settled::Held(held)));
  }

  /// A one-script call: its answer, with what it took undone when it failed, came too late or
  /// left no time.
  fn finish_one_call(&mut self, id: u32, call: Call) {
    let Op::OneCall { one } = call.op else {
      unreachable!("a one-script call")
    };
    let outcome = match &call.reply {
      Some(reply) => one.answer(reply, call.started),
      None => Err(call.tally.failure()),
    };
    let undo = match &outcome {
      Ok((_, undo)) => *undo,
      Err(_) => true,
    };
    if let (true, Some(script)) = (undo, one.undo()) {
      self.undo_script(call.unsent[0], &call.request, script);
    }
    let settled = match outcome {
      Ok((script::Answer::Token(token), _)) => Settled::Token(token),
      Ok((script::Answer::Flag(flag), _)) => Settled::Flag(flag),
      Err(error) => {
        self
          .mutex
          .engine()
          .count::<()>(&Err(error.clone()), |_| None);
        Settled::Failed(error)
      }
    };
    self.settled.push((id, settled));
  }

  /// A primitive's first attempt: its hold, or (busy, failed, or too late) the undo of what it
  /// may have left and the wait handed to the native path, which reports any failure itself.
  fn finish_first_attempt(&mut self, id: u32, call: Call) {
    let Op::FirstAttempt { attempt } = call.op else {
      unreachable!("a first attempt")
    };
    let decision = match (&call.reply, self.mutex.engine().is_closed()) {
      (Some(reply), false) => attempt.decide(reply, call.started),
      _ => Decision::NotHeld(attempt),
    };
    match decision {
      Decision::Held(held) => self.settled.push((id, Settled::Held(held))),
      Decision::NotHeld(attempt) => {
        self.undo_script(call.unsent[0], &call.request, attempt.undo());
        self.settled.push((id, Settled::Wait));
      }
    }
  }

  /// Sends `script` to undo what a call of another primitive may have taken on its single host,
  /// unless the call's request was never written (one connection keeps the order: the undo
  /// runs after it).
  fn undo_script(&mut self, unsent: bool, call: &Request, script: ScriptCall) {
    if unsent {
      return;
    }
    let request = Arc::new(Request {
      command: Command::Script(Arc::new(script)),
      key: call.key.clone(),
      token: call.token.clone(),
      ttl_ms: 0,
    });
    let answer = Answer::Undo {
      host: 0,
      request: request.clone(),
    };
    self.send(0, &request, answer, false);
  }

  /// Undoes a call's attempt on every host that did not refuse it, by the call's own tally (a
  /// host that has not answered yet gets the release after its answer: one connection keeps
  /// the order).
  fn undo_after(&mut self, call: &Call, wakes: &[Wake]) {
    let tally = &call.tally;
    let skip: Vec<bool> = (0..wakes.len())
      .map(|host| {
        let refused = call.answered[host]
          && !tally.failed_hosts.contains(&host)
          && !tally.yes.iter().any(|(yes, _)| *yes == host);
        refused || call.unsent[host]
      })
      .collect();
    for (host, &wake) in wakes.iter().enumerate() {
      if skip[host] {
        continue;
      }
      let request = Arc::new(Request {
        command: Command::Release(wake),
        key: call.request.key.clone(),
        token: call.request.token.clone(),
        ttl_ms: 0,
      });
      let answer = Answer::Undo {
        host,
        request: request.clone(),
      };
      self.send(host, &request, answer, false);
    }
  }

  fn finish_lock(&mut self, id: u32, with_validity: bool, outcome: Result<Option<(String, f64)>>) {
    self.settle_counted(
      id,
      outcome.map(|lease| {
        if with_validity {
          Settled::Lease(lease)
        } else {
          Settled::Token(lease.map(|(token, _)| token))
        }
      }),
      |settled| {
        Some(match settled {
          Settled::Lease(Some(_)) | Settled::Token(Some(_)) => Event::Locked,
          _ => Event::Busy,
        })
      },
    );
  }

  fn settle_counted(
    &mut self,
    id: u32,
    outcome: Result<Settled>,
    success: impl FnOnce(&Settled) -> Option<Event>,
  ) {
    self.mutex.engine().count(&outcome, success);
    self
      .settled
      .push((id, outcome.unwrap_or_else(Settled::Failed)));
  }

  /// The client is closing: locks still being taken are released once their answers are in
  /// (the release follows the request on each connection), and nothing is settled any more.
  pub fn close(&mut self) {
    let calls: Vec<Call> = self.calls.drain().map(|(_, call)| call).collect();
    for call in calls {
      let undo = match &call.op {
        Op::FirstAttempt { attempt } => Some(attempt.undo()),
        Op::OneCall { one } => one.undo(),
        _ => None,
      };
      if let Some(undo) = undo {
        self.undo_script(call.unsent[0], &call.request, undo);
        continue;
      }
      if let Op::Lock { .. } | Op::Acquire { .. } = call.op {
        let hosts = call.answered.len();
        let unanswered = Call {
          answered: vec![false; hosts],
          unsent: vec![false; hosts],
          tally: Tally::new(hosts),
          ..call
        };
        self.undo_after(&unanswered, &vec![Wake::Waiters; hosts]);
      }
    }
    self.settled.clear();
  }

  /// What the caller must do now.
  pub fn turn(&mut self) -> Turn {
    Turn {
      actions: self.wire.actions(),
      settled: std::mem::take(&mut self.settled),
      next_deadline: self
        .calls
        .values()
        .filter(|call| !call.pausing)
        .map(|call| call.deadline)
        .min(),
      busy: self.calls.values().any(|call| !call.pausing),
    }
  }
}

fn script_call<'a>(full_script: bool, sha: &'a str, body: &'a str) -> (&'static [u8], &'a [u8]) {
  if full_script {
    (b"EVAL", body.as_bytes())
  } else {
    (b"EVALSHA", sha.as_bytes())
  }
}
