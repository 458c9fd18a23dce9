//! The engine under every primitive: the hosts and their connections, the release
//! notifications, the tasks that guard held locks, stats, and closing.

pub mod host;
pub mod notify;
pub mod quorum;
pub mod resp;
pub mod script;
pub mod stats;
pub mod wait;
pub mod watchdog;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, ErrorKind, Result};
use crate::options::ClientOptions;
use host::Host;
use notify::Notifications;
use stats::{Event, Stats};

pub struct Engine {
  hosts: Vec<Arc<Host>>,
  options: ClientOptions,
  closed: CancellationToken,
  notifications: Arc<Notifications>,
  /// Guardian tasks of held locks; `close` waits for them to release their locks.
  guardians: TaskTracker,
  stats: Stats,
  /// Set once the hosts turn out not to be independent (two URLs that reach one server).
  misconfigured: Arc<std::sync::OnceLock<Error>>,
  hosts_checked: std::sync::atomic::AtomicBool,
  watchlist: Arc<watchdog::Watchlist>,
}

impl Engine {
  /// Prepares a client for `urls`; connects lazily, on first use. Must run inside a tokio
  /// runtime.
  pub fn new(urls: &[String], options: ClientOptions) -> Result<Engine> {
    if urls.is_empty() {
      return Err(Error::invalid_argument("at least one Redis URL is needed"));
    }
    let unsupported = |what: &str| Err(Error::new(ErrorKind::Unsupported, what.to_owned()));
    let hosts = match (&options.sentinel, options.cluster) {
      (Some(_), true) => return unsupported("sentinel and cluster cannot be combined"),
      (None, true) if options.replica_ack.is_some() => {
        return unsupported("replicaAck is not supported on a cluster yet")
      }
      (None, true) => vec![Arc::new(Host::cluster(urls, &options)?)],
      (Some(name), false) => vec![Arc::new(Host::through_sentinels(urls, name, &options)?)],
      (None, false) => urls
        .iter()
        .map(|url| Host::connect_lazily(url, &options).map(Arc::new))
        .collect::<Result<Vec<_>>>()?,
    };
    for (index, host) in hosts.iter().enumerate() {
      if hosts[..index]
        .iter()
        .any(|earlier| earlier.label() == host.label())
      {
        return Err(Error::invalid_argument(format!(
          "{} is listed twice; Redlock needs independent hosts",
          host.label()
        )));
      }
    }
    let notifications = Arc::new(Notifications::new(hosts.clone(), options.clone()));
    Ok(Engine {
      hosts,
      options,
      closed: CancellationToken::new(),
      notifications,
      guardians: TaskTracker::new(),
      stats: Stats::default(),
      misconfigured: Arc::default(),
      hosts_checked: std::sync::atomic::AtomicBool::new(false),
      watchlist: Arc::default(),
    })
  }

  pub fn options(&self) -> &ClientOptions {
    &self.options
  }

  /// The key as stored in Redis: with the client's prefix.
  pub fn redis_key<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, str> {
    if self.options.prefix.is_empty() {
      std::borrow::Cow::Borrowed(key)
    } else {
      std::borrow::Cow::Owned(format!("{}{key}", self.options.prefix))
    }
  }

  pub fn hosts(&self) -> &[Arc<Host>] {
    &self.hosts
  }

  /// The one host of a client that is not spread over several Redlock hosts (one server, a
  /// Sentinel-watched master, or a Cluster); `what` is refused over several hosts.
  pub fn single_host(&self, what: &str) -> Result<&Arc<Host>> {
    match self.hosts.as_slice() {
      [host] => Ok(host),
      hosts => Err(Error::new(
        ErrorKind::Unsupported,
        format!(
          "{what} needs a single Redis host (one server, Sentinel or a Cluster); this client has {} independent hosts (Redlock)",
          hosts.len()
        ),
      )),
    }
  }

  /// Until when a lease of `ttl_ms` asked for at `sent` can be relied on: its ttl less the time
  /// since and the margin for clock drift. `None` when nothing is left.
  pub fn lease_until(&self, sent: std::time::Instant, ttl_ms: u64) -> Option<std::time::Instant> {
    quorum::validity(
      std::time::Duration::from_millis(ttl_ms),
      sent.elapsed(),
      self.options.drift_factor,
    )
    .map(|left| std::time::Instant::now() + left)
  }

  pub fn is_closed(&self) -> bool {
    self.closed.is_cancelled()
  }

  /// Ends every pending call of this client with [`ErrorKind::Closed`], refuses new ones, and
  /// releases the locks held through handles (each release bounded by the host timeouts).
  pub async fn close(&self) {
    self.closed.cancel();
    self.guardians.close();
    self.guardians.wait().await;
  }

  /// The held locks whose guardians have not started yet.
  pub fn watchlist(&self) -> &watchdog::Watchlist {
    &self.watchlist
  }

  fn watchlist_handle(&self) -> Arc<watchdog::Watchlist> {
    self.watchlist.clone()
  }

  pub fn stats(&self) -> &Stats {
    &self.stats
  }

  /// Counts the outcome of a call: `success` if it succeeded, [`Event::Failed`] if it failed.
  pub fn count<T>(&self, outcome: &Result<T>, success: impl FnOnce(&T) -> Option<Event>) {
    let event = match outcome {
      Ok(value) => success(value),
      Err(error) => Some(match error.kind() {
        ErrorKind::WaitTimeout => Event::WaitTimedOut,
        ErrorKind::Aborted => Event::Aborted,
        ErrorKind::Closed => Event::Closed,
        _ => Event::Failed,
      }),
    };
    if let Some(event) = event {
      self.stats.record(event);
    }
  }

  pub fn notifications(&self) -> &Arc<Notifications> {
    &self.notifications
  }

  /// Runs a task that `close` waits for: a held lock's guardian, or a release in the
  /// background.
  pub fn track<T: Send + 'static>(
    &self,
    task: impl Future<Output = T> + Send + 'static,
  ) -> JoinHandle<T> {
    self.guardians.spawn(task)
  }

  pub fn closed_token(&self) -> &CancellationToken {
    &self.closed
  }

  /// Refuses calls on a closed client. A call already running when the client closes runs to
  /// its end (each is bounded by the host timeouts); waits end at once (see `acquire`), and
  /// the JavaScript layer settles every pending call when it closes.
  pub fn ensure_open(&self) -> Result<()> {
    if self.is_closed() {
      return Err(Error::closed());
    }
    if let Some(error) = self.misconfigured.get() {
      return Err(error.clone());
    }
    Ok(())
  }

  /// On first use, checks in the background that no two Redlock hosts are one server reached
  /// under two names (`localhost` and `127.0.0.1`, say), by the run id each server reports:
  /// such a client would count one server's vote twice. From then on, every call is refused.
  /// In the background, so that a host that is down or stalled delays no call.
  pub fn check_hosts_once(&self) {
    if self.hosts.len() < 2
      || self
        .hosts_checked
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
      return;
    }
    let (hosts, misconfigured) = (self.hosts.clone(), self.misconfigured.clone());
    self.guardians.spawn(async move {
      let run_ids = join_all(hosts.iter().map(|host| async move {
        let info: Result<String> = host.query(redis::cmd("INFO").arg("server")).await;
        info.ok().and_then(|info| {
          info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:").map(|id| id.trim().to_owned()))
        })
      }))
      .await;
      for (index, run_id) in run_ids.iter().enumerate() {
        let Some(run_id) = run_id else { continue };
        if let Some(earlier) = run_ids[..index]
          .iter()
          .position(|other| other.as_ref() == Some(run_id))
        {
          let _ = misconfigured.set(Error::invalid_argument(format!(
            "{} and {} are the same Redis server (run id {run_id}); Redlock needs independent hosts",
            hosts[earlier].label(),
            hosts[index].label()
          )));
          return;
        }
      }
    });
  }
}

/// A fresh random lock token: a uuid v4, from the operating system's CSPRNG.
pub fn new_token() -> String {
  uuid::Uuid::new_v4().to_string()
}
