//! The socket-free calls (`mutex::direct`) driven by a small blocking driver over std sockets,
//! as Node's event loop drives them in the addon: connect when asked, write what is given, feed
//! what is read, expire on time.

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use relock_core::engine::host::Address;
use relock_core::engine::wire::Action;
use relock_core::mutex::direct::{Direct, Settled};
use relock_core::{AcquireOptions, Client, ClientOptions, ErrorKind, RetryPolicy};
use support::RedisServer;

struct Driver {
  direct: Direct,
  addresses: Vec<(String, u16)>,
  sockets: Vec<Option<TcpStream>>,
  settled: HashMap<u32, Settled>,
}

impl Driver {
  fn new(client: &Client) -> Driver {
    let addresses: Vec<(String, u16)> = client
      .engine()
      .hosts()
      .iter()
      .map(
        |host| match &host.endpoint().expect("a plain host").address {
          Address::Tcp { host, port } => (host.clone(), *port),
          Address::Unix { .. } => unreachable!("tcp in these tests"),
        },
      )
      .collect();
    Driver {
      direct: Direct::new(client.mutex().clone()).expect("plain hosts go direct"),
      sockets: addresses.iter().map(|_| None).collect(),
      addresses,
      settled: HashMap::new(),
    }
  }

  /// Runs the event loop until call `id` settles (its retries are waited out here).
  fn settle(&mut self, id: u32) -> Settled {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
      assert!(Instant::now() < deadline, "call {id} never settled");
      let turn = self.direct.turn();
      for action in turn.actions {
        match action {
          Action::Connect(host) => {
            let (name, port) = &self.addresses[host];
            match TcpStream::connect((name.as_str(), *port)) {
              Ok(socket) => {
                socket.set_nodelay(true).unwrap();
                socket
                  .set_read_timeout(Some(Duration::from_millis(5)))
                  .unwrap();
                self.sockets[host] = Some(socket);
                self.direct.connected(host);
              }
              Err(error) => self.direct.closed(
                host,
                relock_core::Error::new(ErrorKind::Connection, error.to_string()),
              ),
            }
          }
          Action::Write(host, bytes) => {
            self.sockets[host]
              .as_mut()
              .expect("written only when connected")
              .write_all(&bytes)
              .unwrap();
          }
        }
      }
      for (settled_id, settled) in turn.settled {
        match settled {
          Settled::RetryAfter(pause) => {
            std::thread::sleep(pause);
            self.direct.retry(settled_id);
          }
          settled => {
            self.settled.insert(settled_id, settled);
          }
        }
      }
      if let Some(settled) = self.settled.remove(&id) {
        return settled;
      }
      let mut buffer = [0u8; 16 * 1024];
      for host in 0..self.sockets.len() {
        let Some(socket) = self.sockets[host].as_mut() else {
          continue;
        };
        match socket.read(&mut buffer) {
          Ok(0) => {
            self.sockets[host] = None;
            self.direct.closed(
              host,
              relock_core::Error::new(ErrorKind::Connection, "closed"),
            );
          }
          Ok(read) => {
            if self.direct.received(host, &buffer[..read]) {
              self.sockets[host] = None;
            }
          }
          Err(error) if matches!(error.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {}
          Err(error) => panic!("read failed: {error}"),
        }
      }
      self.direct.expire(Instant::now());
    }
  }
}

fn options() -> ClientOptions {
  ClientOptions {
    connect_timeout: Duration::from_millis(300),
    command_timeout: Duration::from_millis(300),
    ..ClientOptions::default()
  }
}

fn token(settled: Settled) -> Option<String> {
  match settled {
    Settled::Token(token) => token,
    Settled::Failed(error) => panic!("failed: {error}"),
    _ => panic!("not a lock's answer"),
  }
}

fn flag(settled: Settled) -> bool {
  match settled {
    Settled::Flag(flag) => flag,
    Settled::Failed(error) => panic!("failed: {error}"),
    _ => panic!("not a flag"),
  }
}

#[test]
fn lock_extend_and_unlock_over_the_callers_sockets() {
  let runtime = tokio::runtime::Runtime::new().unwrap();
  let _inside = runtime.enter();
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let mut driver = Driver::new(&client);

  driver
    .direct
    .lock(1, "order", 5000, RetryPolicy::default(), false);
  let held = token(driver.settle(1)).expect("a free key is taken");
  assert_eq!(server.cli(&["GET", "order"]).unwrap().trim(), held);

  driver
    .direct
    .lock(2, "order", 5000, RetryPolicy::default(), false);
  assert_eq!(token(driver.settle(2)), None, "held: busy");

  driver.direct.extend(3, "order", &held, 20_000);
  assert!(flag(driver.settle(3)));
  let pttl: i64 = server
    .cli(&["PTTL", "order"])
    .unwrap()
    .trim()
    .parse()
    .unwrap();
  assert!(pttl > 15_000, "renewed, pttl {pttl}");

  driver.direct.unlock(4, "order", "someone-else");
  assert!(!flag(driver.settle(4)), "only the holder unlocks");
  // The script cache is emptied: the next call sends the script in full.
  server.cli(&["SCRIPT", "FLUSH"]);
  driver.direct.unlock(5, "order", &held);
  assert!(flag(driver.settle(5)));
  assert_eq!(server.cli(&["EXISTS", "order"]).unwrap().trim(), "0");
  assert_eq!(client.engine().stats().counts().locked, 1);
  assert_eq!(client.engine().stats().counts().unlocked, 1);
}

#[test]
fn a_stalled_host_times_out_and_the_attempt_is_undone_when_it_wakes() {
  let runtime = tokio::runtime::Runtime::new().unwrap();
  let _inside = runtime.enter();
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let mut driver = Driver::new(&client);
  driver
    .direct
    .lock(1, "warm-up", 5000, RetryPolicy::default(), false);
  token(driver.settle(1));

  server.signal("STOP");
  let started = Instant::now();
  driver
    .direct
    .lock(2, "stalled", 5000, RetryPolicy::default(), false);
  match driver.settle(2) {
    Settled::Failed(error) => assert_eq!(error.kind(), ErrorKind::Timeout, "{error}"),
    _ => panic!("a stalled host cannot answer"),
  }
  assert!(started.elapsed() < Duration::from_millis(500));
  server.signal("CONT");
  // The SET ran once the host woke, and the release queued behind it removes it.
  driver.direct.unlock(3, "warm-up", "nobody");
  flag(driver.settle(3));
  assert_eq!(server.cli(&["EXISTS", "stalled"]).unwrap().trim(), "0");
}

#[test]
fn an_acquire_takes_a_fenced_lock_that_the_watchdog_renews() {
  let runtime = tokio::runtime::Runtime::new().unwrap();
  let _inside = runtime.enter();
  let server = RedisServer::start();
  let client = Client::new(&[server.url()], options()).unwrap();
  let mut driver = Driver::new(&client);
  let acquire = AcquireOptions {
    ttl_ms: 600,
    wait: Some(Duration::from_secs(1)),
    fair: false,
    watchdog: true,
    max_hold: None,
  };
  assert!(driver
    .direct
    .acquire(1, "job", acquire.clone(), Box::new(|_| {})));
  let held = match driver.settle(1) {
    Settled::Held(held) => held,
    _ => panic!("a free key is acquired"),
  };
  assert_eq!(held.fence(), 1);
  std::thread::sleep(Duration::from_millis(1500));
  assert!(held.is_valid(), "renewed on the native runtime");

  assert!(driver.direct.acquire(2, "job", acquire, Box::new(|_| {})));
  assert!(
    matches!(driver.settle(2), Settled::Wait),
    "a held key is waited for natively"
  );

  driver.direct.release(3, held.clone());
  assert!(flag(driver.settle(3)));
  assert!(!held.is_valid());
  assert_eq!(server.cli(&["EXISTS", "job"]).unwrap().trim(), "0");
}
