//! A master with one replica behind three Sentinels: the lock is taken on the master they name,
//! and on the promoted replica after the master dies.

mod support;

use std::time::Duration;

use relock_core::{AcquireOptions, Client, ClientOptions, RetryPolicy};
use support::{wait_for, RedisServer};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_is_found_through_sentinels_and_followed_through_a_failover() {
  let mut master = RedisServer::start();
  let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
  let sentinels: Vec<RedisServer> = (0..3)
    .map(|_| RedisServer::start_sentinel("mymaster", master.port))
    .collect();
  wait_for(
    "the sentinels knowing the replica and each other",
    Duration::from_secs(20),
    || {
      sentinels.iter().all(|sentinel| {
        let replicas = sentinel
          .cli(&["SENTINEL", "REPLICAS", "mymaster"])
          .unwrap_or_default();
        let peers = sentinel
          .cli(&["SENTINEL", "SENTINELS", "mymaster"])
          .unwrap_or_default();
        replicas.contains("slave") && peers.matches("runid").count() == 2
      })
    },
  );

  let urls: Vec<String> = sentinels.iter().map(RedisServer::url).collect();
  let client = Client::new(
    &urls,
    ClientOptions {
      sentinel: Some("mymaster".into()),
      connect_timeout: Duration::from_millis(500),
      command_timeout: Duration::from_millis(500),
      ..ClientOptions::default()
    },
  )
  .unwrap();
  assert_eq!(
    client.engine().hosts()[0].label(),
    "sentinel master 'mymaster'"
  );
  let mutex = client.mutex();
  let lease = mutex
    .lock("through-sentinel", 60_000, &RetryPolicy::default())
    .await
    .unwrap()
    .expect("a free key is taken");
  assert_eq!(
    master.cli(&["GET", "through-sentinel"]).unwrap().trim(),
    lease.token,
    "the lock is on the master"
  );
  assert!(mutex
    .unlock("through-sentinel", &lease.token)
    .await
    .unwrap());

  // The master dies; the Sentinels agree after a second and promote the replica.
  master.kill();
  wait_for(
    "the replica becoming master",
    Duration::from_secs(30),
    || {
      replica
        .cli(&["ROLE"])
        .is_some_and(|role| role.starts_with("master"))
    },
  );
  let deadline = std::time::Instant::now() + Duration::from_secs(15);
  let lease = loop {
    match mutex
      .lock("after-failover", 60_000, &RetryPolicy::default())
      .await
    {
      Ok(Some(lease)) => break lease,
      outcome => {
        assert!(
          std::time::Instant::now() < deadline,
          "no lock on the new master: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
      }
    }
  };
  assert_eq!(
    replica.cli(&["GET", "after-failover"]).unwrap().trim(),
    lease.token,
    "the lock is on the new master"
  );
  let held = mutex
    .acquire(
      "handle-after-failover",
      AcquireOptions {
        ttl_ms: 2000,
        wait: Some(Duration::from_secs(2)),
        fair: false,
        watchdog: true,
        max_hold: None,
      },
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  assert_eq!(
    replica
      .cli(&["GET", "handle-after-failover"])
      .unwrap()
      .trim(),
    held.token()
  );
  assert!(held.release().await.unwrap());
  client.close().await;
}
