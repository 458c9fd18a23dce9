//! Throwaway redis-server processes on free loopback ports, stopped by PID on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
  pub port: u16,
  child: Option<Child>,
}

impl RedisServer {
  pub fn start() -> RedisServer {
    let port = free_port();
    let mut server = RedisServer { port, child: None };
    server.restart();
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
  }
}

fn free_port() -> u16 {
  TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port()
}
