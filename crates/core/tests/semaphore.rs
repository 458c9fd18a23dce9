//! Counting semaphores on a real redis-server: the permit count holds under contention, a
//! crashed holder's permits come back after its lease, fair waiters are admitted in order (a
//! large request is not passed by small ones), and thousands of holders fit.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relock_core::{AcquireOptions, Client, ClientOptions, ErrorKind, Semaphore, SemaphoreOptions};
use support::RedisServer;
use tokio_util::sync::CancellationToken;

fn semaphore(server: &RedisServer) -> (Client, Arc<Semaphore>) {
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let semaphore = client.semaphore().clone();
  (client, semaphore)
}

fn options(permits: u64, count: u64, wait_ms: u64, fair: bool) -> SemaphoreOptions {
  SemaphoreOptions {
    permits,
    count,
    acquire: AcquireOptions {
      ttl_ms: 5000,
      wait: Some(Duration::from_millis(wait_ms)),
      fair,
      watchdog: true,
      max_hold: None,
    },
  }
}

async fn take(
  semaphore: &Arc<Semaphore>,
  options: SemaphoreOptions,
) -> relock_core::Result<Arc<relock_core::HeldLock>> {
  semaphore
    .begin_acquire("pool", options, CancellationToken::new(), Box::new(|_| {}))
    .await
}

#[tokio::test]
async fn permits_are_counted_and_given_back() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let two = take(&semaphore, options(3, 2, 0, false)).await.unwrap();
  let refused = take(&semaphore, options(3, 2, 0, false)).await.unwrap_err();
  assert_eq!(refused.kind(), ErrorKind::WaitTimeout);
  let one = take(&semaphore, options(3, 1, 0, false)).await.unwrap();
  let state = semaphore.state("pool").await.unwrap();
  assert_eq!((state.in_use, state.holder_count), (3, 2));
  assert!(one.fence() > two.fence(), "fences grow");

  // A waiter for two permits is admitted once the holder of two gives them back.
  let waiter = tokio::spawn({
    let semaphore = semaphore.clone();
    async move { take(&semaphore, options(3, 2, 5000, false)).await }
  });
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert!(!waiter.is_finished());
  let released_at = Instant::now();
  assert!(two.release().await.unwrap());
  let admitted = waiter.await.unwrap().unwrap();
  assert!(
    released_at.elapsed() < Duration::from_millis(500),
    "woken by the release, not by a re-check"
  );
  assert!(admitted.release().await.unwrap());
  assert!(one.release().await.unwrap());
  assert!(
    !one.release().await.unwrap(),
    "a second release finds nothing"
  );
  assert_eq!(semaphore.state("pool").await.unwrap().in_use, 0);

  let too_many = take(&semaphore, options(3, 4, 0, false)).await.unwrap_err();
  assert_eq!(too_many.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_holders_than_permits_under_contention() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let inside = Arc::new(AtomicU64::new(0));
  let most = Arc::new(AtomicU64::new(0));
  let tasks: Vec<_> = (0..8)
    .map(|worker| {
      let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
      tokio::spawn(async move {
        for round in 0..15 {
          let count = 1 + (worker + round) % 2;
          let held = take(&semaphore, options(3, count, 10_000, worker % 2 == 0))
            .await
            .unwrap();
          let now = inside.fetch_add(count, Ordering::SeqCst) + count;
          most.fetch_max(now, Ordering::SeqCst);
          tokio::time::sleep(Duration::from_millis(2)).await;
          inside.fetch_sub(count, Ordering::SeqCst);
          assert!(held.release().await.unwrap());
        }
      })
    })
    .collect();
  for task in tasks {
    task.await.unwrap();
  }
  let most = most.load(Ordering::SeqCst);
  assert!(most <= 3, "{most} permits were in use at once");
  assert!(most >= 2, "the permits were shared ({most} at most)");
  assert_eq!(semaphore.state("pool").await.unwrap().in_use, 0);
}

#[tokio::test]
async fn a_crashed_holders_permits_come_back_after_its_lease() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  // A holder that stops renewing, as a crashed process does.
  let mut crashed = options(2, 2, 0, false);
  crashed.acquire.ttl_ms = 400;
  crashed.acquire.watchdog = false;
  let _silent = take(&semaphore, crashed).await.unwrap();
  let started = Instant::now();
  let next = take(&semaphore, options(2, 1, 5000, false)).await.unwrap();
  let waited = started.elapsed();
  assert!(
    waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
    "admitted after {waited:?}"
  );
  assert!(next.release().await.unwrap());
}

#[tokio::test]
async fn a_release_after_the_lease_ran_out_gives_back_exactly_its_permits() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let mut short = options(3, 2, 0, false);
  short.acquire.ttl_ms = 300;
  short.acquire.watchdog = false;
  let ran_out = take(&semaphore, short).await.unwrap();
  let other = take(&semaphore, options(3, 1, 0, false)).await.unwrap();
  tokio::time::sleep(Duration::from_millis(400)).await;
  // No call has reclaimed the lease that ran out: its holder's release finds it still there,
  // and reports the loss all the same.
  let lost = ran_out.release().await.unwrap_err();
  assert_eq!(lost.kind(), ErrorKind::LockLost);
  let state = semaphore.state("pool").await.unwrap();
  assert_eq!((state.in_use, state.holder_count), (1, 1));
  assert!(other.release().await.unwrap());
  assert_eq!(
    server.cli(&["EXISTS", "pool"]).as_deref().map(str::trim),
    Some("0"),
    "the last holder's release leaves no leases behind"
  );
  let all = take(&semaphore, options(3, 3, 0, false)).await.unwrap();
  assert!(all.release().await.unwrap());
}

#[tokio::test]
async fn fair_waiters_are_admitted_in_order_and_a_large_request_is_not_passed() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let first = take(&semaphore, options(3, 1, 0, true)).await.unwrap();
  let order = Arc::new(std::sync::Mutex::new(Vec::new()));
  let spawn_waiter = |name: &'static str, count: u64| {
    let (semaphore, order) = (semaphore.clone(), order.clone());
    tokio::spawn(async move {
      let held = take(&semaphore, options(3, count, 10_000, true))
        .await
        .unwrap();
      order.lock().unwrap().push(name);
      held
    })
  };
  let large = spawn_waiter("three", 3);
  tokio::time::sleep(Duration::from_millis(100)).await;
  // Two permits are free, but the request for three came first.
  let small = spawn_waiter("one", 1);
  tokio::time::sleep(Duration::from_millis(200)).await;
  assert!(
    order.lock().unwrap().is_empty(),
    "nobody passed the request for three"
  );
  assert!(first.release().await.unwrap());
  let large = large.await.unwrap();
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert_eq!(*order.lock().unwrap(), vec!["three"]);
  assert!(large.release().await.unwrap());
  let small = small.await.unwrap();
  assert_eq!(*order.lock().unwrap(), vec!["three", "one"]);
  assert!(small.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_holders_fit_and_are_reclaimed_at_once() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  const HOLDERS: u64 = 20_000;
  let mut short = options(HOLDERS, 1, 0, false);
  short.acquire.ttl_ms = 1000;
  short.acquire.watchdog = false;
  let takes: Vec<_> = (0..HOLDERS)
    .map(|_| {
      let (semaphore, short) = (semaphore.clone(), short.clone());
      tokio::spawn(async move { take(&semaphore, short).await.unwrap() })
    })
    .collect();
  let mut held = Vec::new();
  for take in takes {
    held.push(take.await.unwrap());
  }
  let state = semaphore.state("pool").await.unwrap();
  assert_eq!((state.in_use, state.holder_count), (HOLDERS, HOLDERS));
  assert_eq!(
    state.holders.len(),
    relock_core::semaphore::STATE_LIST_LIMIT
  );
  let refused = take(&semaphore, options(HOLDERS, 1, 0, false))
    .await
    .unwrap_err();
  assert_eq!(refused.kind(), ErrorKind::WaitTimeout);
  tokio::time::sleep(Duration::from_millis(1100)).await;
  // Every lease ran out: the next call reclaims all of them (in batches) in one script.
  let state = semaphore.state("pool").await.unwrap();
  assert_eq!((state.in_use, state.holder_count), (0, 0));
}

#[tokio::test]
async fn several_redlock_hosts_are_refused_clearly() {
  let (one, two, three) = (
    RedisServer::start(),
    RedisServer::start(),
    RedisServer::start(),
  );
  let client = Client::new(
    &[one.url(), two.url(), three.url()],
    ClientOptions::default(),
  )
  .unwrap();
  let error = take(client.semaphore(), options(2, 1, 0, false))
    .await
    .unwrap_err();
  assert_eq!(error.kind(), ErrorKind::Unsupported);
  assert!(error.message().contains("single Redis host"), "{error}");
}

#[tokio::test]
async fn an_idle_semaphore_leaves_only_its_fence_counter() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let held = take(&semaphore, options(2, 2, 0, true)).await.unwrap();
  let waiter = tokio::spawn({
    let semaphore = semaphore.clone();
    async move { take(&semaphore, options(2, 1, 5000, true)).await }
  });
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert!(held.release().await.unwrap());
  assert!(waiter.await.unwrap().unwrap().release().await.unwrap());
  let keys = server.cli(&["KEYS", "*"]).unwrap();
  assert_eq!(
    keys.trim(),
    "{pool}:relock:semaphore:fence",
    "nothing but the fence counter is left"
  );
}

#[tokio::test]
async fn the_keys_of_holders_that_all_crashed_expire() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let mut crashed = options(2, 1, 0, false);
  crashed.acquire.ttl_ms = 300;
  crashed.acquire.watchdog = false;
  let _first = take(&semaphore, crashed.clone()).await.unwrap();
  let _second = take(&semaphore, crashed).await.unwrap();
  // Nobody releases or calls again: the keys go by their expiry (at most twice the lease and
  // a second ahead), leaving the fence counter.
  tokio::time::sleep(Duration::from_millis(2 * 300 + 1000 + 200)).await;
  assert_eq!(
    server.cli(&["KEYS", "*"]).unwrap().trim(),
    "{pool}:relock:semaphore:fence"
  );
}

#[tokio::test]
async fn a_lease_shorter_than_the_others_is_still_reclaimed_when_it_ends() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let take_from = |key: &'static str, ttl_ms: u64, watchdog: bool| {
    let semaphore = semaphore.clone();
    async move {
      let mut options = options(3, 1, 0, false);
      options.acquire.ttl_ms = ttl_ms;
      options.acquire.watchdog = watchdog;
      semaphore
        .begin_acquire(key, options, CancellationToken::new(), Box::new(|_| {}))
        .await
        .unwrap()
    }
  };
  // A long lease first: calls skip the search for expired holders until the first lease end
  // they know of, so a shorter lease after it, or one shortened by extend, must move that.
  let _long = take_from("short-lease", 5000, true).await;
  let _crashed = take_from("short-lease", 300, false).await;
  let _long_too = take_from("shortened-lease", 5000, true).await;
  let shortened = take_from("shortened-lease", 5000, false).await;
  shortened.extend(300).await.unwrap();
  tokio::time::sleep(Duration::from_millis(500)).await;
  // Asked before this, state (which always searches) would have set that right itself.
  for key in ["short-lease", "shortened-lease"] {
    let mut two = options(3, 2, 0, false);
    two.acquire.ttl_ms = 5000;
    let taken = semaphore
      .begin_acquire(key, two, CancellationToken::new(), Box::new(|_| {}))
      .await;
    assert!(
      taken.is_ok(),
      "'{key}': the ended lease still held its permit: {taken:?}"
    );
  }
}

#[tokio::test]
async fn keys_emptied_by_a_reclaim_still_expire_after_the_next_crash() {
  let server = RedisServer::start();
  let (_client, semaphore) = semaphore(&server);
  let crashing = |ttl_ms| {
    let mut options = options(2, 1, 0, false);
    options.acquire.ttl_ms = ttl_ms;
    options.acquire.watchdog = false;
    options
  };
  // A first holder whose lease sets the keys' expiry well ahead (twice its ttl and a second)...
  let _first = take(&semaphore, crashing(1000)).await.unwrap();
  tokio::time::sleep(Duration::from_millis(1100)).await;
  // ...is reclaimed by this call, which empties the leases...
  assert_eq!(semaphore.state("pool").await.unwrap().in_use, 0);
  // ...and a holder with a shorter lease crashes too: its keys must still go by their expiry
  // (at most twice its lease and a second ahead), not stay for ever.
  let _second = take(&semaphore, crashing(300)).await.unwrap();
  tokio::time::sleep(Duration::from_millis(2 * 1000 + 1000 + 200)).await;
  assert_eq!(
    server.cli(&["KEYS", "*"]).unwrap().trim(),
    "{pool}:relock:semaphore:fence"
  );
}
