mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relock_core::{AcquireOptions, Client, ClientOptions, ErrorKind, Mutex};
use support::RedisServer;
use tokio_util::sync::CancellationToken;

fn options(ttl_ms: u64, fair: bool) -> AcquireOptions {
  AcquireOptions {
    ttl_ms,
    wait: Some(Duration::from_secs(5)),
    fair,
    watchdog: true,
    max_hold: None,
  }
}

fn client(server: &RedisServer) -> Arc<Mutex> {
  Client::new(&[server.url()], ClientOptions::default())
    .unwrap()
    .mutex()
    .clone()
}

#[tokio::test]
async fn fair_waiters_are_served_in_arrival_order_and_fences_grow() {
  let server = RedisServer::start();
  let client = client(&server);
  let first = client
    .acquire(
      "q",
      options(5000, true),
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  let served = Arc::new(std::sync::Mutex::new(Vec::new()));
  let mut waiters = Vec::new();
  for index in 0..4 {
    let wait = client.begin_acquire(
      "q",
      options(5000, true),
      CancellationToken::new(),
      Box::new(|_| {}),
    );
    let served = served.clone();
    waiters.push(tokio::spawn(async move {
      let held = wait.await.unwrap();
      served.lock().unwrap().push((index, held.fence()));
      held.release().await.unwrap();
    }));
  }
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert_eq!(
    server.cli(&["LLEN", "{q}:relock:queue"]).unwrap().trim(),
    "4"
  );
  first.release().await.unwrap();
  for waiter in waiters {
    waiter.await.unwrap();
  }
  assert_eq!(
    *served.lock().unwrap(),
    vec![(0, 2), (1, 3), (2, 4), (3, 5)]
  );
  assert_eq!(
    server
      .cli(&["EXISTS", "{q}:relock:queue", "{q}:relock:waiters", "q"])
      .unwrap()
      .trim(),
    "0"
  );
}

#[tokio::test]
async fn the_watchdog_renews_and_a_takeover_is_reported_once() {
  let server = RedisServer::start();
  let client = client(&server);
  let reports = Arc::new(AtomicUsize::new(0));
  let counter = reports.clone();
  let held = client
    .acquire(
      "w",
      options(300, false),
      CancellationToken::new(),
      Box::new(move |e| {
        assert_eq!(e.kind(), ErrorKind::LockLost);
        counter.fetch_add(1, Ordering::SeqCst);
      }),
    )
    .await
    .unwrap();
  tokio::time::sleep(Duration::from_millis(800)).await;
  assert!(held.is_valid(), "renewed past its ttl");
  server.cli(&["SET", "w", "intruder"]).unwrap();
  tokio::time::sleep(Duration::from_millis(400)).await;
  assert!(!held.is_valid());
  assert_eq!(reports.load(Ordering::SeqCst), 1);
  assert_eq!(
    held.release().await.unwrap_err().kind(),
    ErrorKind::LockLost
  );
  assert!(
    !held.release().await.unwrap(),
    "a second release is harmless"
  );
}

#[tokio::test]
async fn cancel_and_timeout_end_a_wait_and_leave_the_queue() {
  let server = RedisServer::start();
  let client = client(&server);
  let _held = client
    .acquire(
      "c",
      options(5000, false),
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  let cancel = CancellationToken::new();
  let wait =
    tokio::spawn(client.begin_acquire("c", options(5000, true), cancel.clone(), Box::new(|_| {})));
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert_eq!(
    server.cli(&["LLEN", "{c}:relock:queue"]).unwrap().trim(),
    "1"
  );
  cancel.cancel();
  assert_eq!(wait.await.unwrap().unwrap_err().kind(), ErrorKind::Aborted);
  // The waiter leaves the queue in the background, right after the abort settled.
  let mut left_behind = String::new();
  for _ in 0..50 {
    left_behind = server
      .cli(&["EXISTS", "{c}:relock:queue", "{c}:relock:waiters"])
      .unwrap();
    if left_behind.trim() == "0" {
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert_eq!(left_behind.trim(), "0", "the queue entry was left behind");

  let mut short = options(5000, false);
  short.wait = Some(Duration::from_millis(150));
  let err = client
    .acquire("c", short, CancellationToken::new(), Box::new(|_| {}))
    .await
    .unwrap_err();
  assert_eq!(err.kind(), ErrorKind::WaitTimeout);
  assert!(client.gates().is_empty(), "the local line is gone");
}

/// `{e}` hashes like `e` and shares its side-key prefix: a release of `e` must never hand `e`
/// to a fair waiter of `{e}` (which would then take itself for the holder of `{e}`).
#[tokio::test]
async fn a_release_of_a_key_never_serves_a_waiter_of_its_braced_twin() {
  let server = RedisServer::start();
  let client = client(&server);
  let no_report = || Box::new(|_: &relock_core::Error| {}) as relock_core::LostCallback;
  let braced = client
    .acquire(
      "{e}",
      options(10_000, false),
      CancellationToken::new(),
      no_report(),
    )
    .await
    .unwrap();
  let plain = client
    .acquire(
      "e",
      options(10_000, false),
      CancellationToken::new(),
      no_report(),
    )
    .await
    .unwrap();
  let mut waiting = options(10_000, true);
  waiting.wait = Some(Duration::from_millis(1500));
  let waiter =
    tokio::spawn(client.begin_acquire("{e}", waiting, CancellationToken::new(), no_report()));
  tokio::time::sleep(Duration::from_millis(200)).await;
  assert!(plain.release().await.unwrap());
  let outcome = waiter.await.unwrap();
  assert_eq!(
    outcome.map(|held| held.fence()).unwrap_err().kind(),
    ErrorKind::WaitTimeout,
    "a second holder of {{e}} beside the first"
  );
  assert!(braced.is_valid());
  assert_eq!(server.cli(&["EXISTS", "e"]).unwrap().trim(), "0");
  assert!(braced.release().await.unwrap());
}
