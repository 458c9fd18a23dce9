mod support;

use std::time::Duration;

use relock_core::{Client, ClientOptions, ErrorKind, RetryPolicy};
use support::RedisServer;

fn options() -> ClientOptions {
  ClientOptions {
    connect_timeout: Duration::from_millis(500),
    command_timeout: Duration::from_millis(300),
    ..ClientOptions::default()
  }
}

fn once() -> RetryPolicy {
  RetryPolicy::default()
}

#[tokio::test]
async fn lock_excludes_until_unlock_and_only_the_holder_unlocks() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();

  let lease = client
    .mutex()
    .lock("order:42", 5000, &once())
    .await
    .unwrap()
    .expect("free key is taken");
  assert_eq!(lease.token.len(), 36);
  assert_eq!(
    server.cli(&["GET", "order:42"]).unwrap().trim(),
    lease.token
  );
  let pttl: i64 = server
    .cli(&["PTTL", "order:42"])
    .unwrap()
    .trim()
    .parse()
    .unwrap();
  assert!((4000..=5000).contains(&pttl), "pttl {pttl}");

  assert!(
    client
      .mutex()
      .lock("order:42", 5000, &once())
      .await
      .unwrap()
      .is_none(),
    "not reentrant"
  );
  assert!(!client
    .mutex()
    .unlock("order:42", "someone-else")
    .await
    .unwrap());
  assert!(client
    .mutex()
    .extend("order:42", "someone-else", 9000)
    .await
    .unwrap()
    .is_none());
  assert_eq!(
    server.cli(&["GET", "order:42"]).unwrap().trim(),
    lease.token
  );

  assert!(client
    .mutex()
    .extend("order:42", &lease.token, 60_000)
    .await
    .unwrap()
    .is_some());
  let pttl: i64 = server
    .cli(&["PTTL", "order:42"])
    .unwrap()
    .trim()
    .parse()
    .unwrap();
  assert!(pttl > 50_000, "extended pttl {pttl}");

  assert!(client
    .mutex()
    .unlock("order:42", &lease.token)
    .await
    .unwrap());
  assert!(
    !client
      .mutex()
      .unlock("order:42", &lease.token)
      .await
      .unwrap(),
    "second unlock is false"
  );
  assert_eq!(server.cli(&["EXISTS", "order:42"]).unwrap().trim(), "0");
}

#[tokio::test]
async fn scripts_survive_script_flush_and_the_connection_survives_a_restart() {
  let mut server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let lease = client
    .mutex()
    .lock("k", 5000, &once())
    .await
    .unwrap()
    .unwrap();
  server.cli(&["SCRIPT", "FLUSH"]).unwrap();
  assert!(
    client.mutex().unlock("k", &lease.token).await.unwrap(),
    "NOSCRIPT is recovered from"
  );

  server.kill();
  let down = client.mutex().lock("k", 5000, &once()).await.unwrap_err();
  assert!(
    matches!(down.kind(), ErrorKind::Connection | ErrorKind::Timeout),
    "{down}"
  );
  server.restart();
  let mut recovered = None;
  for _ in 0..50 {
    if let Ok(Some(lease)) = client.mutex().lock("k", 5000, &once()).await {
      recovered = Some(lease);
      break;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  let lease = recovered.expect("the same client works again after the restart");
  server.cli(&["SCRIPT", "FLUSH"]).unwrap();
  assert!(client.mutex().unlock("k", &lease.token).await.unwrap());
}

#[tokio::test]
async fn an_unreachable_host_fails_within_the_connect_timeout() {
  let port = std::net::TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port();
  let client = Client::new(&[format!("redis://127.0.0.1:{port}")], options()).unwrap();
  let started = std::time::Instant::now();
  let err = client.mutex().lock("k", 1000, &once()).await.unwrap_err();
  assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
  assert!(
    err.message().contains(&format!("127.0.0.1:{port}")),
    "{err}"
  );
  assert!(started.elapsed() < Duration::from_millis(800 + 200));
}

#[tokio::test]
async fn a_paused_host_times_out_and_recovers() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let lease = client
    .mutex()
    .lock("p", 5000, &once())
    .await
    .unwrap()
    .unwrap();
  server.signal("STOP");
  let started = std::time::Instant::now();
  let err = client
    .mutex()
    .extend("p", &lease.token, 5000)
    .await
    .unwrap_err();
  server.signal("CONT");
  assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
  assert!(
    started.elapsed() < Duration::from_millis(800 + 200),
    "{:?}",
    started.elapsed()
  );
  let mut renewed = false;
  for _ in 0..50 {
    if let Ok(Some(_)) = client.mutex().extend("p", &lease.token, 5000).await {
      renewed = true;
      break;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  assert!(renewed, "works again after SIGCONT");
}

#[tokio::test]
async fn retries_are_bounded_by_count_and_time() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let _held = client
    .mutex()
    .lock("r", 10_000, &once())
    .await
    .unwrap()
    .unwrap();
  let retry = RetryPolicy {
    count: 1000,
    delay: Duration::from_millis(20),
    jitter: Duration::from_millis(10),
    budget: Some(Duration::from_millis(300)),
  };
  let started = std::time::Instant::now();
  assert!(client
    .mutex()
    .lock("r", 1000, &retry)
    .await
    .unwrap()
    .is_none());
  let spent = started.elapsed();
  assert!(
    spent >= Duration::from_millis(250) && spent < Duration::from_millis(600),
    "{spent:?}"
  );
}

#[tokio::test]
async fn closing_ends_calls_with_the_closed_error() {
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  client.close().await;
  assert_eq!(
    client
      .mutex()
      .lock("c", 1000, &once())
      .await
      .unwrap_err()
      .kind(),
    ErrorKind::Closed
  );
  assert_eq!(server.cli(&["EXISTS", "c"]).unwrap().trim(), "0");
}

#[tokio::test]
async fn bad_input_is_refused_before_redis_sees_it() {
  let client = Client::new(&["redis://127.0.0.1:1".to_owned()], options()).unwrap();
  assert_eq!(
    client
      .mutex()
      .lock("", 1000, &once())
      .await
      .unwrap_err()
      .kind(),
    ErrorKind::InvalidArgument
  );
  assert_eq!(
    client.mutex().unlock("k", "").await.unwrap_err().kind(),
    ErrorKind::InvalidArgument
  );
  let err = Client::new(
    &["redis://a:1".to_owned(), "redis://a:1".to_owned()],
    options(),
  )
  .err()
  .unwrap();
  assert_eq!(err.kind(), ErrorKind::InvalidArgument);
  let err = Client::new(&["memcached://a:1".to_owned()], options())
    .err()
    .unwrap();
  assert_eq!(err.kind(), ErrorKind::InvalidUrl);
}
