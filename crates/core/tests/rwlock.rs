//! Read-write locks on a real redis-server: readers share, a writer is alone, a waiting writer
//! turns new readers away, a crashed reader holds a writer back for at most its ttl, fair mode
//! serves strictly in arrival order, downgrade and upgrade, and the write lock is the key's
//! plain lock.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relock_core::{
  AcquireOptions, Client, ClientOptions, ErrorKind, HeldLock, Mode, RetryPolicy, RwLock,
};
use support::RedisServer;
use tokio_util::sync::CancellationToken;

fn client(server: &RedisServer) -> (Client, Arc<RwLock>) {
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let rwlock = client.rwlock().clone();
  (client, rwlock)
}

fn options(wait_ms: u64, fair: bool) -> AcquireOptions {
  AcquireOptions {
    ttl_ms: 5000,
    wait: Some(Duration::from_millis(wait_ms)),
    fair,
    watchdog: true,
    max_hold: None,
  }
}

async fn take(
  rwlock: &Arc<RwLock>,
  mode: Mode,
  options: AcquireOptions,
) -> relock_core::Result<Arc<HeldLock>> {
  rwlock
    .begin_acquire(
      "doc",
      mode,
      options,
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
}

#[tokio::test]
async fn readers_share_a_writer_is_alone_and_a_waiting_writer_stops_new_readers() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let first = take(&rwlock, Mode::Read, options(0, false)).await.unwrap();
  let second = take(&rwlock, Mode::Read, options(0, false)).await.unwrap();
  let refused = take(&rwlock, Mode::Write, options(0, false))
    .await
    .unwrap_err();
  assert_eq!(refused.kind(), ErrorKind::WaitTimeout);

  let writer = tokio::spawn({
    let rwlock = rwlock.clone();
    async move { take(&rwlock, Mode::Write, options(5000, false)).await }
  });
  tokio::time::sleep(Duration::from_millis(100)).await;
  let late = take(&rwlock, Mode::Read, options(0, false))
    .await
    .unwrap_err();
  assert_eq!(
    late.kind(),
    ErrorKind::WaitTimeout,
    "a reader does not pass a waiting writer"
  );
  let state = rwlock.state("doc").await.unwrap();
  assert_eq!((state.reader_count, state.waiting_writers), (2, 1));
  assert!(first.release().await.unwrap());
  assert!(!writer.is_finished());
  let released_at = Instant::now();
  assert!(second.release().await.unwrap());
  let writer = writer.await.unwrap().unwrap();
  assert!(
    released_at.elapsed() < Duration::from_millis(500),
    "woken by the release"
  );
  assert_eq!(server.cli(&["GET", "doc"]).unwrap().trim(), writer.token());
  assert!(take(&rwlock, Mode::Read, options(0, false)).await.is_err());
  let reader = tokio::spawn({
    let rwlock = rwlock.clone();
    async move { take(&rwlock, Mode::Read, options(5000, false)).await }
  });
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert!(!reader.is_finished());
  let released_at = Instant::now();
  assert!(writer.release().await.unwrap());
  let reader = reader.await.unwrap().unwrap();
  assert!(
    released_at.elapsed() < Duration::from_millis(500),
    "a waiting reader is woken by the writer's release, not by a re-check"
  );
  assert!(reader.release().await.unwrap());
}

#[tokio::test]
async fn the_write_lock_is_the_keys_plain_lock_and_shares_its_fences() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let lease = client
    .mutex()
    .acquire(
      "doc",
      options(0, false),
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  let refused = take(client.rwlock(), Mode::Write, options(0, false))
    .await
    .unwrap_err();
  assert_eq!(refused.kind(), ErrorKind::WaitTimeout);
  let fence = lease.fence();
  assert!(lease.release().await.unwrap());
  let writer = take(client.rwlock(), Mode::Write, options(0, false))
    .await
    .unwrap();
  assert_eq!(writer.fence(), fence + 1);
  assert!(client
    .mutex()
    .lock("doc", 1000, &RetryPolicy::default())
    .await
    .unwrap()
    .is_none());
  assert!(writer.release().await.unwrap());
}

#[tokio::test]
async fn a_crashed_reader_holds_a_writer_back_for_at_most_its_ttl() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let mut silent = options(0, false);
  silent.ttl_ms = 400;
  silent.watchdog = false;
  let _crashed = take(&rwlock, Mode::Read, silent).await.unwrap();
  let started = Instant::now();
  let writer = take(&rwlock, Mode::Write, options(5000, false))
    .await
    .unwrap();
  let waited = started.elapsed();
  assert!(
    waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
    "the writer came in after {waited:?}"
  );
  assert!(writer.release().await.unwrap());
}

#[tokio::test]
async fn downgrade_keeps_the_hold_and_upgrade_needs_the_only_reader() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let writer = take(&rwlock, Mode::Write, options(0, false)).await.unwrap();
  let fence = writer.fence();
  rwlock.downgrade(&writer).await.unwrap();
  assert_eq!(server.cli(&["EXISTS", "doc"]).unwrap().trim(), "0");
  let other = take(&rwlock, Mode::Read, options(0, false)).await.unwrap();
  assert!(take(&rwlock, Mode::Write, options(0, false)).await.is_err());
  assert_eq!(rwlock.state("doc").await.unwrap().reader_count, 2);

  let refused = rwlock.upgrade(&writer).await.unwrap_err();
  assert_eq!(refused.kind(), ErrorKind::UpgradeRefused);
  assert!(refused.message().contains("1 other reader"), "{refused}");
  assert!(other.release().await.unwrap());
  let upgraded = rwlock.upgrade(&writer).await.unwrap();
  assert!(upgraded > fence, "an upgrade gets a new fence");
  assert_eq!(writer.fence(), upgraded);
  assert_eq!(server.cli(&["GET", "doc"]).unwrap().trim(), writer.token());
  assert_eq!(
    rwlock.upgrade(&other).await.unwrap_err().kind(),
    ErrorKind::LockLost,
    "a released hold cannot be upgraded"
  );
  assert_eq!(
    rwlock.upgrade(&writer).await.unwrap_err().kind(),
    ErrorKind::InvalidArgument,
    "a write hold is not upgraded"
  );
  assert!(writer.release().await.unwrap());
  let state = rwlock.state("doc").await.unwrap();
  assert_eq!((state.writer, state.reader_count), (None, 0));
}

#[tokio::test]
async fn the_watchdog_renews_readers_and_a_downgraded_writer() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let mut short = options(0, false);
  short.ttl_ms = 300;
  let reader = take(&rwlock, Mode::Read, short.clone()).await.unwrap();
  let writer_side = take(&rwlock, Mode::Read, short.clone()).await.unwrap();
  assert!(writer_side.release().await.unwrap());
  tokio::time::sleep(Duration::from_millis(900)).await;
  assert!(reader.is_valid());
  assert_eq!(rwlock.state("doc").await.unwrap().reader_count, 1);
  assert!(reader.release().await.unwrap());

  let writer = take(&rwlock, Mode::Write, short).await.unwrap();
  rwlock.downgrade(&writer).await.unwrap();
  tokio::time::sleep(Duration::from_millis(900)).await;
  assert!(writer.is_valid(), "renewed as a reader");
  assert_eq!(rwlock.state("doc").await.unwrap().reader_count, 1);
  assert!(writer.release().await.unwrap());
}

#[tokio::test]
async fn fair_mode_serves_readers_and_writers_in_arrival_order() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let holder = take(&rwlock, Mode::Write, options(0, true)).await.unwrap();
  let served = Arc::new(std::sync::Mutex::new(Vec::new()));
  let mut waiters = Vec::new();
  for (name, mode) in [
    ("r1", Mode::Read),
    ("w2", Mode::Write),
    ("r3", Mode::Read),
    ("r4", Mode::Read),
  ] {
    let (rwlock, served) = (rwlock.clone(), served.clone());
    waiters.push(tokio::spawn(async move {
      let held = take(&rwlock, mode, options(10_000, true)).await.unwrap();
      served.lock().unwrap().push(name);
      tokio::time::sleep(Duration::from_millis(100)).await;
      served.lock().unwrap().push("out");
      held.release().await.unwrap();
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  let state = rwlock.state("doc").await.unwrap();
  assert_eq!(
    state
      .queue
      .iter()
      .map(|(mode, _)| *mode)
      .collect::<Vec<_>>(),
    vec![Mode::Read, Mode::Write, Mode::Read, Mode::Read]
  );
  assert!(holder.release().await.unwrap());
  for waiter in waiters {
    waiter.await.unwrap();
  }
  let served = served.lock().unwrap().clone();
  // r1 alone, then w2 alone, then r3 and r4 together.
  assert_eq!(&served[..4], &["r1", "out", "w2", "out"]);
  let mut last = served[4..].to_vec();
  last.sort();
  assert_eq!(last, vec!["out", "out", "r3", "r4"]);
  assert_eq!(
    served[4..6].iter().filter(|name| **name != "out").count(),
    2,
    "r3 and r4 read together: {served:?}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_a_reader_beside_a_writer_nor_two_writers_under_contention() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  // Positive: readers inside; -1: a writer inside.
  let inside = Arc::new(AtomicI64::new(0));
  let most_readers = Arc::new(AtomicI64::new(0));
  let writes = Arc::new(AtomicI64::new(0));
  let tasks: Vec<_> = (0..8)
    .map(|worker| {
      let (rwlock, inside, most_readers, writes) = (
        rwlock.clone(),
        inside.clone(),
        most_readers.clone(),
        writes.clone(),
      );
      tokio::spawn(async move {
        for round in 0..12 {
          let fair = worker % 3 == 0;
          if (worker + round) % 4 == 0 {
            let held = take(&rwlock, Mode::Write, options(20_000, fair))
              .await
              .unwrap();
            assert_eq!(
              inside.compare_exchange(0, -1, Ordering::SeqCst, Ordering::SeqCst),
              Ok(0),
              "a writer came in beside others"
            );
            writes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            inside.store(0, Ordering::SeqCst);
            assert!(held.release().await.unwrap());
          } else {
            let held = take(&rwlock, Mode::Read, options(20_000, fair))
              .await
              .unwrap();
            let now = inside.fetch_add(1, Ordering::SeqCst);
            assert!(now >= 0, "a reader came in beside a writer");
            most_readers.fetch_max(now + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(3)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            assert!(held.release().await.unwrap());
          }
        }
      })
    })
    .collect();
  for task in tasks {
    task.await.unwrap();
  }
  assert_eq!(writes.load(Ordering::SeqCst), 24);
  assert!(
    most_readers.load(Ordering::SeqCst) >= 2,
    "readers shared the lock"
  );
}

#[tokio::test]
async fn an_idle_read_write_lock_leaves_only_its_fence_counter() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let reader = take(&rwlock, Mode::Read, options(0, false)).await.unwrap();
  // A waiting writer and a fair waiting reader, each letting go as soon as it gets in.
  let waiters: Vec<_> = [(Mode::Write, false), (Mode::Read, true)]
    .into_iter()
    .map(|(mode, fair)| {
      let rwlock = rwlock.clone();
      tokio::spawn(async move {
        let held = take(&rwlock, mode, options(5000, fair)).await.unwrap();
        assert!(held.release().await.unwrap());
      })
    })
    .collect();
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert!(reader.release().await.unwrap());
  for waiter in waiters {
    waiter.await.unwrap();
  }
  let keys = server.cli(&["KEYS", "*"]).unwrap();
  assert_eq!(
    keys.trim(),
    "{doc}:relock:fence",
    "nothing but the fence counter is left"
  );
}

#[tokio::test]
async fn the_keys_of_readers_that_all_crashed_expire() {
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let mut crashed = options(0, false);
  crashed.ttl_ms = 300;
  crashed.watchdog = false;
  let _first = take(&rwlock, Mode::Read, crashed.clone()).await.unwrap();
  let _second = take(&rwlock, Mode::Read, crashed).await.unwrap();
  // Nobody releases or calls again: the readers' key goes by its expiry (at most twice the
  // lease and a second ahead).
  tokio::time::sleep(Duration::from_millis(2 * 300 + 1000 + 200)).await;
  assert_eq!(server.cli(&["KEYS", "*"]).unwrap().trim(), "");
}

#[tokio::test]
async fn a_crashed_readers_lease_is_dropped_by_the_next_reader() {
  // Readers only, no watchdog, no writer: each read pushes the readers' key's expiry ahead, so
  // only the reads themselves can drop a crashed reader's lease.
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let mut crashed = options(0, false);
  crashed.ttl_ms = 200;
  crashed.watchdog = false;
  let _crashed = take(&rwlock, Mode::Read, crashed).await.unwrap();
  tokio::time::sleep(Duration::from_millis(300)).await;
  let reader = take(&rwlock, Mode::Read, options(0, false)).await.unwrap();
  assert_eq!(
    server
      .cli(&["ZCARD", "{doc}:relock:rw:readers"])
      .unwrap()
      .trim(),
    "1",
    "the crashed reader's lease is gone"
  );
  assert!(reader.release().await.unwrap());
}

#[tokio::test]
async fn a_reader_whose_prune_emptied_the_readers_key_still_gives_it_an_expiry() {
  // The first reader's lease makes the key live 2 × 200 + 1000 ms; the second comes after that
  // lease ran out, prunes it (which deletes the emptied key) and writes the key anew. Had it
  // trusted the expiry read before the prune (ample for its 50 ms lease), the new key would
  // have none, and after its crash would stay for good.
  let server = RedisServer::start();
  let (_client, rwlock) = client(&server);
  let mut crashed = options(0, false);
  crashed.watchdog = false;
  crashed.ttl_ms = 200;
  let _first = take(&rwlock, Mode::Read, crashed.clone()).await.unwrap();
  tokio::time::sleep(Duration::from_millis(300)).await;
  crashed.ttl_ms = 50;
  let _second = take(&rwlock, Mode::Read, crashed).await.unwrap();
  let pttl: i64 = server
    .cli(&["PTTL", "{doc}:relock:rw:readers"])
    .unwrap()
    .trim()
    .parse()
    .unwrap();
  assert!(pttl > 0, "the readers' key has no expiry (PTTL {pttl})");
  tokio::time::sleep(Duration::from_millis(2 * 50 + 1000 + 200)).await;
  assert_eq!(server.cli(&["KEYS", "*"]).unwrap().trim(), "");
}

/// Keeps the server busy for `ms` (a script that spins on Redis's clock), from another client.
fn keep_busy(server: &RedisServer, ms: u64) -> std::thread::JoinHandle<()> {
  let cli = [
    "redis-cli".to_owned(),
    "-p".to_owned(),
    server.port.to_string(),
  ];
  let script = format!(
    "local s = redis.call('TIME') local start = s[1] * 1000000 + s[2] \
     while true do local t = redis.call('TIME') \
     if t[1] * 1000000 + t[2] - start > {} then break end end return 1",
    ms * 1000
  );
  std::thread::spawn(move || {
    let _ = std::process::Command::new(&cli[0])
      .args(&cli[1..])
      .args(["EVAL", &script, "0"])
      .output();
  })
}

/// Takes a hold in `from` and changes its mode (down from a write, up from a read) while the
/// server is busy, so that the change times out and runs afterwards. Returns the client, which
/// must live as long as the hold, and the hold, its mode now unknown to the handle.
async fn change_mode_unanswered(server: &RedisServer, from: Mode) -> (Client, Arc<HeldLock>) {
  let client = Client::new(
    &[server.url()],
    ClientOptions {
      command_timeout: Duration::from_millis(150),
      ..ClientOptions::default()
    },
  )
  .unwrap();
  let rwlock = client.rwlock().clone();
  let change = |held: Arc<HeldLock>| {
    let rwlock = rwlock.clone();
    async move {
      match from {
        Mode::Write => rwlock.downgrade(&held).await,
        Mode::Read => rwlock.upgrade(&held).await.map(|_| ()),
      }
    }
  };
  // Loads the scripts: a script the server lacks would be sent again, which the timeout stops.
  let warm_up = take(&rwlock, from, options(0, false)).await.unwrap();
  change(warm_up.clone()).await.unwrap();
  assert!(warm_up.release().await.unwrap());
  let held = take(&rwlock, from, options(0, false)).await.unwrap();
  let busy = keep_busy(server, 500);
  tokio::time::sleep(Duration::from_millis(100)).await;
  let unanswered = change(held.clone()).await.unwrap_err();
  assert_eq!(unanswered.kind(), ErrorKind::Timeout, "{unanswered}");
  busy.join().unwrap();
  (client, held)
}

#[tokio::test]
async fn a_downgrade_whose_answer_never_came_leaves_nothing_behind_at_release() {
  // The downgrade runs once the server is free: the hold is then a reader, though the handle
  // could not learn it. Its release must not take it for the writer it was, or the reader's
  // entry stays until its ttl.
  let server = RedisServer::start();
  let (_client, writer) = change_mode_unanswered(&server, Mode::Write).await;
  let now_a_reader = || {
    server
      .cli(&["ZCARD", "{doc}:relock:rw:readers"])
      .unwrap()
      .trim()
      .to_owned()
  };
  support::wait_for("the downgrade to run", Duration::from_secs(2), || {
    now_a_reader() == "1"
  });
  let _ = writer.release().await;
  assert_eq!(now_a_reader(), "0", "the reader's entry was left behind");
  assert_eq!(server.cli(&["EXISTS", "doc"]).unwrap().trim(), "0");
}

#[tokio::test]
async fn an_upgrade_whose_answer_never_came_leaves_nothing_behind_at_release() {
  // As for the downgrade: the hold, a writer now, must not be released as the reader it was,
  // or the write key stays until its ttl.
  let server = RedisServer::start();
  let (_client, reader) = change_mode_unanswered(&server, Mode::Read).await;
  support::wait_for("the upgrade to run", Duration::from_secs(2), || {
    server.cli(&["GET", "doc"]).unwrap().trim() == reader.token()
  });
  let _ = reader.release().await;
  assert_eq!(
    server.cli(&["EXISTS", "doc"]).unwrap().trim(),
    "0",
    "the write key was left behind"
  );
}
