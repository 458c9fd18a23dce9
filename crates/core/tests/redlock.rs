//! Redlock over 3 and 5 independent redis-server processes: majorities, dead hosts, undo of
//! partial locks, fences and validity.

mod support;

use std::time::{Duration, Instant};

use relock_core::{AcquireOptions, Client, ClientOptions, ErrorKind, RetryPolicy};
use support::RedisServer;
use tokio_util::sync::CancellationToken;

fn options() -> ClientOptions {
  ClientOptions {
    connect_timeout: Duration::from_millis(300),
    command_timeout: Duration::from_millis(300),
    ..ClientOptions::default()
  }
}

fn servers(count: usize) -> Vec<RedisServer> {
  (0..count).map(|_| RedisServer::start()).collect()
}

fn client(servers: &[RedisServer]) -> Client {
  let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
  Client::new(&urls, options()).unwrap()
}

fn value(server: &RedisServer, key: &str) -> String {
  server.cli(&["GET", key]).unwrap().trim().to_owned()
}

/// Polls `check` for up to a second.
async fn eventually(what: &str, check: impl Fn() -> bool) {
  let deadline = Instant::now() + Duration::from_secs(1);
  while !check() {
    assert!(Instant::now() < deadline, "{what} did not happen");
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
}

fn acquire_options(ttl_ms: u64) -> AcquireOptions {
  AcquireOptions {
    ttl_ms,
    wait: Some(Duration::from_secs(2)),
    fair: false,
    watchdog: true,
    max_hold: None,
  }
}

#[tokio::test]
async fn a_lock_is_taken_on_every_host_and_excludes_a_second_client() {
  for count in [3, 5] {
    let servers = servers(count);
    let (first, second) = (client(&servers), client(&servers));
    let lease = first
      .mutex()
      .lock("invoice", 5000, &RetryPolicy::default())
      .await
      .unwrap()
      .expect("a free key is taken");
    // The answer comes once a majority took it; the last hosts may take a moment longer.
    eventually("held on every host", || {
      servers
        .iter()
        .all(|server| value(server, "invoice") == lease.token)
    })
    .await;
    let validity = lease.valid_until.saturating_duration_since(Instant::now());
    assert!(
      validity <= Duration::from_millis(5000 - 50 - 2),
      "validity {validity:?} leaves the drift margin"
    );
    let busy = second
      .mutex()
      .lock("invoice", 5000, &RetryPolicy::default())
      .await
      .unwrap();
    assert!(busy.is_none(), "{count} hosts: the key is held");
    assert!(first.mutex().unlock("invoice", &lease.token).await.unwrap());
    // The answer comes once a majority released; the last hosts may take a moment longer.
    eventually("released on every host", || {
      servers
        .iter()
        .all(|server| value(server, "invoice").is_empty())
    })
    .await;
  }
}

#[tokio::test]
async fn a_key_held_on_a_minority_is_free_and_on_a_majority_is_busy() {
  let servers = servers(5);
  let client = client(&servers);
  for server in &servers[..2] {
    server.cli(&["SET", "minority", "someone-else", "PX", "10000"]);
  }
  let lease = client
    .mutex()
    .lock("minority", 5000, &RetryPolicy::default())
    .await
    .unwrap()
    .expect("3 of 5 hosts are a majority");
  for server in &servers[2..] {
    assert_eq!(value(server, "minority"), lease.token);
  }
  for server in &servers[..3] {
    server.cli(&["SET", "majority", "someone-else", "PX", "10000"]);
  }
  let busy = client
    .mutex()
    .lock("majority", 5000, &RetryPolicy::default())
    .await
    .unwrap();
  assert!(busy.is_none());
  // The attempt that lost is undone on the hosts that said yes, in the background.
  eventually("the partial lock is undone", || {
    servers[3..]
      .iter()
      .all(|server| value(server, "majority").is_empty())
  })
  .await;
}

#[tokio::test]
async fn a_minority_down_changes_nothing_and_a_majority_down_fails_with_every_cause() {
  for (count, down) in [(3, 2), (5, 3)] {
    let mut servers = servers(count);
    let client = client(&servers);
    servers[0].kill();
    let lease = client
      .mutex()
      .lock("minority-down", 5000, &RetryPolicy::default())
      .await
      .unwrap()
      .expect("a majority still answers");
    assert!(client
      .mutex()
      .unlock("minority-down", &lease.token)
      .await
      .unwrap());

    for server in &mut servers[1..down] {
      server.kill();
    }
    let started = Instant::now();
    let error = client
      .mutex()
      .lock("majority-down", 5000, &RetryPolicy::default())
      .await
      .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoQuorum, "{error}");
    assert!(
      error
        .message()
        .contains(&format!("{} of {count} hosts answered", count - down)),
      "{error}"
    );
    for server in &servers[..down] {
      assert!(
        error
          .message()
          .contains(&format!("127.0.0.1:{}", server.port)),
        "{error} names {}",
        server.port
      );
    }
    assert!(
      started.elapsed() < Duration::from_millis(600),
      "failed within the timeouts"
    );
    eventually("the partial lock is undone on the live hosts", || {
      servers[down..]
        .iter()
        .all(|server| value(server, "majority-down").is_empty())
    })
    .await;

    // The same client recovers once the hosts are back.
    for server in &mut servers[..down] {
      server.restart();
    }
    let mut taken = None;
    for _ in 0..50 {
      if let Ok(Some(lease)) = client
        .mutex()
        .lock("majority-down", 5000, &RetryPolicy::default())
        .await
      {
        taken = Some(lease);
        break;
      }
      tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lease = taken.expect("locks again after the restart");
    assert!(client
      .mutex()
      .unlock("majority-down", &lease.token)
      .await
      .unwrap());
  }
}

#[tokio::test]
async fn handles_over_several_hosts_carry_growing_fences_and_release_everywhere() {
  for count in [3, 5] {
    let servers = servers(count);
    let client = client(&servers);
    let mut last_fence = 0;
    for _ in 0..3 {
      let held = client
        .mutex()
        .acquire(
          "fenced",
          acquire_options(5000),
          CancellationToken::new(),
          Box::new(|_| {}),
        )
        .await
        .unwrap();
      assert!(held.fence() > last_fence, "{count} hosts: fences grow");
      last_fence = held.fence();
      eventually("held on every host", || {
        servers
          .iter()
          .all(|server| value(server, "fenced") == held.token())
      })
      .await;
      assert!(held.release().await.unwrap());
      eventually("released on every host", || {
        servers
          .iter()
          .all(|server| value(server, "fenced").is_empty())
      })
      .await;
    }
  }
}

#[tokio::test]
async fn the_watchdog_renews_on_a_majority_while_a_minority_is_down() {
  let mut servers = servers(3);
  let client = client(&servers);
  let held = client
    .mutex()
    .acquire(
      "renewed",
      acquire_options(600),
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  servers[0].kill();
  tokio::time::sleep(Duration::from_millis(1500)).await;
  assert!(
    held.is_valid(),
    "renewed past two ttls by the two live hosts"
  );
  let pttl: i64 = servers[1]
    .cli(&["PTTL", "renewed"])
    .unwrap()
    .trim()
    .parse()
    .unwrap();
  assert!(pttl > 0, "the key lives on the live hosts, pttl {pttl}");
  assert!(held.release().await.unwrap());
}
