//! Multi-key locks on a real redis-server: all keys or none, per-key fences shared with single
//! locks, a busy key waited for by its release message, overlapping sets without deadlock,
//! loss of one key as loss of the whole.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relock_core::{AcquireOptions, Client, ClientOptions, ErrorKind, HeldLock, RetryPolicy};
use support::RedisServer;
use tokio_util::sync::CancellationToken;

fn keys(names: &[&str]) -> Vec<String> {
  names.iter().map(|name| name.to_string()).collect()
}

fn options(wait_ms: u64) -> AcquireOptions {
  AcquireOptions {
    ttl_ms: 5000,
    wait: Some(Duration::from_millis(wait_ms)),
    fair: false,
    watchdog: true,
    max_hold: None,
  }
}

async fn take(
  client: &Client,
  names: &[&str],
  options: AcquireOptions,
) -> relock_core::Result<Arc<HeldLock>> {
  client
    .multi()
    .begin_acquire(
      &keys(names),
      options,
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
}

#[tokio::test]
async fn all_keys_or_none() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let single = client
    .mutex()
    .lock("b", 5000, &RetryPolicy::default())
    .await
    .unwrap()
    .unwrap();
  assert!(client
    .multi()
    .lock(&keys(&["a", "b", "c"]), 5000)
    .await
    .unwrap()
    .is_none());
  for key in ["a", "c"] {
    assert_eq!(
      server.cli(&["EXISTS", key]).unwrap().trim(),
      "0",
      "{key} was not taken"
    );
  }
  assert!(client.mutex().unlock("b", &single.token).await.unwrap());
  let lease = client
    .multi()
    .lock(&keys(&["c", "a", "b"]), 5000)
    .await
    .unwrap()
    .unwrap();
  for key in ["a", "b", "c"] {
    assert_eq!(server.cli(&["GET", key]).unwrap().trim(), lease.token);
  }
  assert!(client
    .mutex()
    .lock("a", 5000, &RetryPolicy::default())
    .await
    .unwrap()
    .is_none());
  assert!(client
    .multi()
    .unlock(&keys(&["a", "b", "c"]), &lease.token)
    .await
    .unwrap());
  assert!(!client
    .multi()
    .unlock(&keys(&["a", "b", "c"]), &lease.token)
    .await
    .unwrap());

  let twice = client
    .multi()
    .lock(&keys(&["a", "a"]), 5000)
    .await
    .unwrap_err();
  assert_eq!(twice.kind(), ErrorKind::InvalidArgument);
  let none = client.multi().lock(&[], 5000).await.unwrap_err();
  assert_eq!(none.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn a_handle_has_a_fence_per_key_and_waits_for_the_busy_key() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let single = client
    .mutex()
    .acquire("y", options(0), CancellationToken::new(), Box::new(|_| {}))
    .await
    .unwrap();
  let waiter = tokio::spawn({
    let multi = client.multi().clone();
    async move {
      multi
        .begin_acquire(
          &keys(&["y", "x"]),
          options(5000),
          CancellationToken::new(),
          Box::new(|_| {}),
        )
        .await
    }
  });
  tokio::time::sleep(Duration::from_millis(150)).await;
  assert!(!waiter.is_finished());
  assert_eq!(
    server.cli(&["EXISTS", "x"]).unwrap().trim(),
    "0",
    "nothing is held while waiting"
  );
  let y_fence = single.fence();
  let released_at = Instant::now();
  assert!(single.release().await.unwrap());
  let held = waiter.await.unwrap().unwrap();
  assert!(
    released_at.elapsed() < Duration::from_millis(500),
    "woken by y's release"
  );
  let parts = held.parts().to_vec();
  assert_eq!(parts.len(), 2);
  assert_eq!(
    parts[0],
    ("y".to_owned(), y_fence + 1),
    "in the caller's order"
  );
  assert_eq!(parts[1].0, "x");
  assert!(held.release().await.unwrap());
}

#[tokio::test]
async fn losing_one_key_is_losing_the_whole() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let lost = Arc::new(AtomicBool::new(false));
  let mut short = options(0);
  short.ttl_ms = 300;
  let held = client
    .multi()
    .begin_acquire(&keys(&["p", "q"]), short, CancellationToken::new(), {
      let lost = lost.clone();
      Box::new(move |_| lost.store(true, Ordering::SeqCst))
    })
    .await
    .unwrap();
  server.cli(&["DEL", "q"]).unwrap();
  tokio::time::sleep(Duration::from_millis(600)).await;
  assert!(lost.load(Ordering::SeqCst), "the loss of q was reported");
  assert!(!held.is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_sets_in_opposite_orders_never_deadlock() {
  let server = RedisServer::start();
  let client = Arc::new(Client::new(&[server.url()], ClientOptions::default()).unwrap());
  let inside = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
  let sets: [&[&str]; 4] = [
    &["k1", "k2", "k3"],
    &["k3", "k2"],
    &["k2", "k4", "k1"],
    &["k4", "k3"],
  ];
  let tasks: Vec<_> = sets
    .iter()
    .cycle()
    .take(8)
    .map(|set| {
      let (client, inside) = (client.clone(), inside.clone());
      let set: Vec<&'static str> = set.to_vec();
      tokio::spawn(async move {
        for _ in 0..10 {
          let held = take(&client, &set, options(20_000)).await.unwrap();
          {
            let mut inside = inside.lock().unwrap();
            for key in &set {
              assert!(inside.insert(*key), "{key} was held twice at once");
            }
          }
          tokio::time::sleep(Duration::from_millis(1)).await;
          {
            let mut inside = inside.lock().unwrap();
            for key in &set {
              inside.remove(key);
            }
          }
          assert!(held.release().await.unwrap());
        }
      })
    })
    .collect();
  let all = async {
    for task in tasks {
      task.await.unwrap();
    }
  };
  tokio::time::timeout(Duration::from_secs(60), all)
    .await
    .expect("every caller got its keys: no deadlock");
}

#[tokio::test]
async fn the_most_keys_a_lock_may_have_are_taken_refused_and_given_back() {
  // 1,000 keys in one slot group, in one script per call; the held one is the last.
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  let names: Vec<String> = (0..relock_core::multikey::MAX_KEYS)
    .map(|i| format!("{{many}}:{i}"))
    .collect();
  let last = names.last().unwrap().clone();
  let single = client
    .mutex()
    .lock(&last, 5000, &RetryPolicy::default())
    .await
    .unwrap()
    .unwrap();
  assert!(client.multi().lock(&names, 5000).await.unwrap().is_none());
  assert_eq!(server.cli(&["EXISTS", "{many}:0"]).unwrap().trim(), "0");
  assert!(client.mutex().unlock(&last, &single.token).await.unwrap());

  let lease = client.multi().lock(&names, 5000).await.unwrap().unwrap();
  assert!(client.multi().unlock(&names, &lease.token).await.unwrap());
  let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
  let held = take(&client, &name_refs, options(0)).await.unwrap();
  assert_eq!(held.parts().len(), names.len());
  assert_eq!(
    server.cli(&["GET", &last]).unwrap().trim(),
    held.token(),
    "the last key is held"
  );
  assert!(held.release().await.unwrap());
  assert_eq!(
    server
      .cli(&["EXISTS", "{many}:0", "{many}:500", &last])
      .unwrap()
      .trim(),
    "0"
  );
}

#[tokio::test]
async fn a_key_of_another_type_is_refused_and_left_as_it_is() {
  // A sorted set (a semaphore's, say) under one of the names: neither taking nor giving back
  // the set may overwrite it, and the caller learns why.
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], ClientOptions::default()).unwrap();
  server.cli(&["ZADD", "{t}:pool", "1", "member"]).unwrap();
  let names = keys(&["{t}:pool", "{t}:x"]);
  let taking = client.multi().lock(&names, 5000).await.unwrap_err();
  assert_eq!(taking.kind(), ErrorKind::Redis, "{taking}");
  let acquiring = take(&client, &["{t}:pool", "{t}:x"], options(0))
    .await
    .unwrap_err();
  assert_eq!(acquiring.kind(), ErrorKind::Redis, "{acquiring}");
  let giving_back = client
    .multi()
    .unlock(&names, "00000000-0000-4000-8000-000000000000")
    .await
    .unwrap_err();
  assert_eq!(giving_back.kind(), ErrorKind::Redis, "{giving_back}");
  assert_eq!(server.cli(&["TYPE", "{t}:pool"]).unwrap().trim(), "zset");
  assert_eq!(server.cli(&["EXISTS", "{t}:x"]).unwrap().trim(), "0");
}
