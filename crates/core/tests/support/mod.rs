//! Throwaway redis-server processes on free loopback ports, stopped by PID on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
  pub port: u16,
  child: Option<Child>,
  extra_args: Vec<String>,
  dir: Option<std::path::PathBuf>,
}

/// Tries to start a server this many times, on a new port each time: a free port can be taken
/// by another process between finding it and the server binding it.
const START_ATTEMPTS: usize = 5;

impl RedisServer {
  pub fn start() -> RedisServer {
    RedisServer::start_with(&[])
  }

  /// A server with more command-line arguments, in its own working directory (for the files a
  /// cluster node or a Sentinel writes).
  pub fn start_with(extra_args: &[&str]) -> RedisServer {
    // A cluster node also listens on its port + 10000 (the cluster bus).
    let cluster = extra_args.contains(&"--cluster-enabled");
    for _ in 0..START_ATTEMPTS {
      let port = if cluster {
        free_cluster_port()
      } else {
        free_port()
      };
      let mut server = RedisServer {
        port,
        child: None,
        extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        dir: Some(own_dir("test", port)),
      };
      if server.try_restart() {
        return server;
      }
    }
    panic!("redis-server did not start in {START_ATTEMPTS} attempts");
  }

  /// A Sentinel watching the master `name` at `master_port`, which it declares down after a
  /// second.
  pub fn start_sentinel(name: &str, master_port: u16) -> RedisServer {
    for _ in 0..START_ATTEMPTS {
      let port = free_port();
      let dir = own_dir("sentinel", port);
      let config = dir.join("sentinel.conf");
      std::fs::write(
        &config,
        format!(
          "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {master_port} 2\nsentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 4000\n",
          dir.display()
        ),
      )
      .unwrap();
      let child = Command::new("redis-server")
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not on PATH");
      let mut server = RedisServer {
        port,
        child: Some(child),
        extra_args: Vec::new(),
        dir: Some(dir),
      };
      if server.came_up() {
        return server;
      }
    }
    panic!("redis-server --sentinel did not start in {START_ATTEMPTS} attempts");
  }

  pub fn url(&self) -> String {
    format!("redis://127.0.0.1:{}", self.port)
  }

  /// Starts the server again on the same port (after `kill`).
  pub fn restart(&mut self) {
    assert!(
      self.try_restart(),
      "redis-server on port {} did not start",
      self.port
    );
  }

  fn try_restart(&mut self) -> bool {
    let child = Command::new("redis-server")
      .args([
        "--port",
        &self.port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
      ])
      .args(&self.extra_args)
      .current_dir(self.dir.clone().unwrap_or_else(std::env::temp_dir))
      .stdout(Stdio::null())
      .stderr(Stdio::null())
      .spawn()
      .expect(
        "redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server)",
      );
    self.child = Some(child);
    self.came_up()
  }

  /// Waits until the server answers PING; false if it exited (its port was taken) or did not
  /// answer within 10 s (it is then killed).
  fn came_up(&mut self) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
      if self
        .cli(&["PING"])
        .map(|out| out.trim() == "PONG")
        .unwrap_or(false)
      {
        return true;
      }
      let exited = self
        .child
        .as_mut()
        .is_some_and(|child| child.try_wait().ok().flatten().is_some());
      if exited {
        self.child = None;
        return false;
      }
      std::thread::sleep(Duration::from_millis(20));
    }
    self.kill();
    false
  }

  pub fn pid(&self) -> u32 {
    self.child.as_ref().expect("server is running").id()
  }

  pub fn signal(&self, signal: &str) {
    let status = Command::new("kill")
      .args([&format!("-{signal}"), &self.pid().to_string()])
      .status()
      .unwrap();
    assert!(status.success());
  }

  /// SIGKILL, and wait until the process is gone.
  pub fn kill(&mut self) {
    if let Some(mut child) = self.child.take() {
      let _ = child.kill();
      let _ = child.wait();
    }
  }

  pub fn cli(&self, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
      .args(["-p", &self.port.to_string()])
      .args(args)
      .output()
      .ok()?;
    output
      .status
      .success()
      .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
  }
}

impl Drop for RedisServer {
  fn drop(&mut self) {
    self.kill();
    if let Some(dir) = &self.dir {
      let _ = std::fs::remove_dir_all(dir);
    }
  }
}

/// Polls `check` every 50 ms until it holds, for at most `within`.
pub fn wait_for(what: &str, within: Duration, check: impl Fn() -> bool) {
  let deadline = Instant::now() + within;
  while !check() {
    assert!(
      Instant::now() < deadline,
      "{what} did not happen within {within:?}"
    );
    std::thread::sleep(Duration::from_millis(50));
  }
}

/// A working directory of its own for one server.
fn own_dir(what: &str, port: u16) -> std::path::PathBuf {
  let dir = std::env::temp_dir().join(format!("relock-core-{what}-{}-{port}", std::process::id()));
  std::fs::create_dir_all(&dir).unwrap();
  dir
}

/// A free port whose cluster bus port (+ 10000) is free and valid as well.
fn free_cluster_port() -> u16 {
  loop {
    let port = free_port();
    if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
      return port;
    }
  }
}

fn free_port() -> u16 {
  TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port()
}
