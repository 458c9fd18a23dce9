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

impl RedisServer {
  pub fn start() -> RedisServer {
    RedisServer::start_with(&[])
  }

  /// A server with more command-line arguments, in its own working directory (for the files a
  /// cluster node or a Sentinel writes).
  pub fn start_with(extra_args: &[&str]) -> RedisServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("relock-core-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = RedisServer {
      port,
      child: None,
      extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
      dir: Some(dir),
    };
    server.restart();
    server
  }

  /// A Sentinel watching the master `name` at `master_port`, which it declares down after a
  /// second.
  pub fn start_sentinel(name: &str, master_port: u16) -> RedisServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
      "relock-core-sentinel-{}-{port}",
      std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
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
    let server = RedisServer {
      port,
      child: Some(child),
      extra_args: Vec::new(),
      dir: Some(dir),
    };
    server.wait_until_ready();
    server
  }

  pub fn url(&self) -> String {
    format!("redis://127.0.0.1:{}", self.port)
  }

  /// Starts the server again on the same port (after `kill`).
  pub fn restart(&mut self) {
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
    self.wait_until_ready();
  }

  fn wait_until_ready(&self) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
      if self
        .cli(&["PING"])
        .map(|out| out.trim() == "PONG")
        .unwrap_or(false)
      {
        return;
      }
      std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {} did not start", self.port);
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

fn free_port() -> u16 {
  TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port()
}
