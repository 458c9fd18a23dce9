//! A real 3-master Redis Cluster: locks on keys of every slot, side keys in the lock key's slot,
//! fair waits and growing fences, and a slot moved to another node while locks are taken.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use relock_core::{AcquireOptions, Client, ClientOptions, RetryPolicy};
use support::{wait_for, RedisServer};
use tokio_util::sync::CancellationToken;

const NODE_ARGS: [&str; 6] = [
  "--cluster-enabled",
  "yes",
  "--cluster-config-file",
  "nodes.conf",
  "--cluster-node-timeout",
  "2000",
];

fn start_cluster() -> Vec<RedisServer> {
  let nodes: Vec<RedisServer> = (0..3)
    .map(|_| RedisServer::start_with(&NODE_ARGS))
    .collect();
  let addresses: Vec<String> = nodes
    .iter()
    .map(|node| format!("127.0.0.1:{}", node.port))
    .collect();
  let created = Command::new("redis-cli")
    .arg("--cluster")
    .arg("create")
    .args(&addresses)
    .arg("--cluster-yes")
    .output()
    .unwrap();
  assert!(
    created.status.success(),
    "redis-cli --cluster create failed"
  );
  wait_for("the cluster being ready", Duration::from_secs(20), || {
    nodes.iter().all(|node| {
      node
        .cli(&["CLUSTER", "INFO"])
        .is_some_and(|info| info.contains("cluster_state:ok"))
    })
  });
  nodes
}

fn client(nodes: &[RedisServer]) -> Client {
  let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
  Client::new(
    &urls,
    ClientOptions {
      cluster: true,
      connect_timeout: Duration::from_millis(1000),
      command_timeout: Duration::from_millis(1000),
      ..ClientOptions::default()
    },
  )
  .unwrap()
}

/// The node that serves `key`'s slot, asked of the cluster itself.
fn owner<'a>(nodes: &'a [RedisServer], key: &str) -> &'a RedisServer {
  nodes
    .iter()
    .find(|node| {
      node
        .cli(&["GET", key])
        .is_some_and(|reply| !reply.starts_with("MOVED"))
    })
    .expect("one node serves every slot")
}

fn node_id(node: &RedisServer) -> String {
  node.cli(&["CLUSTER", "MYID"]).unwrap().trim().to_owned()
}

fn acquire_options(fair: bool) -> AcquireOptions {
  AcquireOptions {
    ttl_ms: 5000,
    wait: Some(Duration::from_secs(5)),
    fair,
    watchdog: true,
    max_hold: None,
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_on_every_node_with_side_keys_in_the_slot_and_a_moved_slot_followed() {
  let nodes = start_cluster();
  let (first, second) = (client(&nodes), client(&nodes));

  let keys: Vec<String> = (0..30).map(|index| format!("order:{index}")).collect();
  for key in &keys {
    let lease = first
      .mutex()
      .lock(key, 5000, &RetryPolicy::default())
      .await
      .unwrap()
      .expect("a free key is taken");
    assert_eq!(
      owner(&nodes, key).cli(&["GET", key]).unwrap().trim(),
      lease.token,
      "{key}: the token is on the node that serves its slot"
    );
    assert!(second
      .mutex()
      .lock(key, 5000, &RetryPolicy::default())
      .await
      .unwrap()
      .is_none());
    assert!(first.mutex().unlock(key, &lease.token).await.unwrap());
    // A fair acquire runs one script over the key and its three side keys: a CROSSSLOT error
    // here would mean a side key left the slot.
    let held = first
      .mutex()
      .acquire(
        key,
        acquire_options(true),
        CancellationToken::new(),
        Box::new(|_| {}),
      )
      .await
      .unwrap();
    let state = first.mutex().inspect(key).await.unwrap();
    assert_eq!(state[0].holder.as_deref(), Some(held.token()));
    assert!(held.release().await.unwrap());
  }

  // The slot of `moving` goes to another node (MIGRATING/IMPORTING, then NODE): the clients
  // follow the ASK and MOVED redirections without an error.
  let key = "moving";
  let lease = first
    .mutex()
    .lock(key, 60_000, &RetryPolicy::default())
    .await
    .unwrap()
    .unwrap();
  let source = owner(&nodes, key);
  let target = nodes.iter().find(|node| node.port != source.port).unwrap();
  let slot = source
    .cli(&["CLUSTER", "KEYSLOT", key])
    .unwrap()
    .trim()
    .to_owned();
  let (source_id, target_id) = (node_id(source), node_id(target));
  target
    .cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id])
    .unwrap();
  source
    .cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id])
    .unwrap();
  // Mid-migration the key is still on the source, so the second client is refused there.
  assert!(second
    .mutex()
    .lock(key, 60_000, &RetryPolicy::default())
    .await
    .unwrap()
    .is_none());
  let moved = source
    .cli(&[
      "MIGRATE",
      "127.0.0.1",
      &target.port.to_string(),
      "",
      "0",
      "5000",
      "KEYS",
      key,
    ])
    .unwrap();
  assert!(moved.contains("OK"), "MIGRATE answered {moved}");
  for node in &nodes {
    node
      .cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &target_id])
      .unwrap();
  }
  assert_eq!(target.cli(&["GET", key]).unwrap().trim(), lease.token);
  assert!(second
    .mutex()
    .lock(key, 60_000, &RetryPolicy::default())
    .await
    .unwrap()
    .is_none());
  assert!(first.mutex().unlock(key, &lease.token).await.unwrap());
  assert!(target.cli(&["EXISTS", key]).unwrap().trim() == "0");
  first.close().await;
  second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_waiters_over_the_cluster_are_served_in_order_with_growing_fences() {
  let nodes = start_cluster();
  let client = client(&nodes);
  let mutex = client.mutex().clone();
  let first = mutex
    .acquire(
      "contended",
      acquire_options(true),
      CancellationToken::new(),
      Box::new(|_| {}),
    )
    .await
    .unwrap();
  let served = Arc::new(std::sync::Mutex::new(Vec::new()));
  let mut waiters = Vec::new();
  for index in 0..4 {
    let wait = mutex.begin_acquire(
      "contended",
      acquire_options(true),
      CancellationToken::new(),
      Box::new(|_| {}),
    );
    let served = served.clone();
    waiters.push(tokio::spawn(async move {
      let held = wait.await.unwrap();
      served.lock().unwrap().push((index, held.fence()));
      held.release().await.unwrap();
    }));
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  tokio::time::sleep(Duration::from_millis(100)).await;
  let fence = first.fence();
  assert!(first.release().await.unwrap());
  for waiter in waiters {
    waiter.await.unwrap();
  }
  let served = served.lock().unwrap().clone();
  assert_eq!(
    served.iter().map(|(index, _)| *index).collect::<Vec<_>>(),
    vec![0, 1, 2, 3]
  );
  let fences: Vec<i64> = std::iter::once(fence)
    .chain(served.iter().map(|(_, fence)| *fence))
    .collect();
  assert!(
    fences.windows(2).all(|pair| pair[1] > pair[0]),
    "fences grow: {fences:?}"
  );
  client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_locks_over_several_slots_are_all_or_none_without_deadlock() {
  let nodes = start_cluster();
  let client = Arc::new(client(&nodes));
  let names: Vec<String> = (0..6).map(|index| format!("stock:{index}")).collect();
  let slots: std::collections::HashSet<String> = names
    .iter()
    .map(|key| nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).unwrap())
    .collect();
  assert!(slots.len() > 3, "the keys spread over slots");

  let single = client
    .mutex()
    .lock("stock:5", 5000, &RetryPolicy::default())
    .await
    .unwrap()
    .unwrap();
  assert!(client.multi().lock(&names, 5000).await.unwrap().is_none());
  for key in &names[..5] {
    assert_eq!(
      owner(&nodes, key).cli(&["EXISTS", key]).unwrap().trim(),
      "0",
      "{key} was given back"
    );
  }
  assert!(client
    .mutex()
    .unlock("stock:5", &single.token)
    .await
    .unwrap());
  let lease = client.multi().lock(&names, 5000).await.unwrap().unwrap();
  for key in &names {
    assert_eq!(
      owner(&nodes, key).cli(&["GET", key]).unwrap().trim(),
      lease.token
    );
  }
  assert!(client.multi().unlock(&names, &lease.token).await.unwrap());

  // Overlapping sets, named in different orders, from several tasks at once.
  let sets: Vec<Vec<String>> = vec![
    vec![names[0].clone(), names[1].clone(), names[2].clone()],
    vec![names[2].clone(), names[1].clone()],
    vec![names[3].clone(), names[0].clone()],
    vec![names[1].clone(), names[3].clone()],
  ];
  let inside = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
  let tasks: Vec<_> = sets
    .into_iter()
    .cycle()
    .take(8)
    .map(|set| {
      let (client, inside) = (client.clone(), inside.clone());
      tokio::spawn(async move {
        for _ in 0..8 {
          let held = client
            .multi()
            .begin_acquire(
              &set,
              acquire_options(false),
              CancellationToken::new(),
              Box::new(|_| {}),
            )
            .await
            .unwrap();
          for key in &set {
            assert!(
              inside.lock().unwrap().insert(key.clone()),
              "{key} held twice at once"
            );
          }
          tokio::time::sleep(Duration::from_millis(1)).await;
          for key in &set {
            inside.lock().unwrap().remove(key);
          }
          assert!(held.release().await.unwrap());
        }
      })
    })
    .collect();
  tokio::time::timeout(Duration::from_secs(60), async {
    for task in tasks {
      task.await.unwrap();
    }
  })
  .await
  .expect("no deadlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_locks_and_semaphores_run_in_one_slot_per_key() {
  use relock_core::{Mode, SemaphoreOptions};
  let nodes = start_cluster();
  let client = client(&nodes);
  for index in 0..12 {
    // Seven keys per script: a CROSSSLOT error would mean a side key left the key's slot.
    let key = format!("doc:{index}");
    let reader = client
      .rwlock()
      .begin_acquire(
        &key,
        Mode::Read,
        acquire_options(index % 2 == 0),
        CancellationToken::new(),
        Box::new(|_| {}),
      )
      .await
      .unwrap();
    let mut no_wait = acquire_options(false);
    no_wait.wait = Some(Duration::ZERO);
    let refused = client
      .rwlock()
      .begin_acquire(
        &key,
        Mode::Write,
        no_wait.clone(),
        CancellationToken::new(),
        Box::new(|_| {}),
      )
      .await
      .unwrap_err();
    assert_eq!(refused.kind(), relock_core::ErrorKind::WaitTimeout);
    client.rwlock().upgrade(&reader).await.unwrap();
    assert_eq!(
      owner(&nodes, &key).cli(&["GET", &key]).unwrap().trim(),
      reader.token()
    );
    client.rwlock().downgrade(&reader).await.unwrap();
    assert_eq!(client.rwlock().state(&key).await.unwrap().reader_count, 1);
    assert!(reader.release().await.unwrap());

    let pool = format!("pool:{index}");
    let options = |count| SemaphoreOptions {
      permits: 3,
      count,
      acquire: acquire_options(index % 2 == 1),
    };
    let two = client
      .semaphore()
      .begin_acquire(
        &pool,
        options(2),
        CancellationToken::new(),
        Box::new(|_| {}),
      )
      .await
      .unwrap();
    let one = client
      .semaphore()
      .begin_acquire(
        &pool,
        options(1),
        CancellationToken::new(),
        Box::new(|_| {}),
      )
      .await
      .unwrap();
    assert_eq!(client.semaphore().state(&pool).await.unwrap().in_use, 3);
    assert!(two.release().await.unwrap() && one.release().await.unwrap());
    assert_eq!(client.semaphore().state(&pool).await.unwrap().in_use, 0);
  }
  client.close().await;
}
