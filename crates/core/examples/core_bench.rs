//! The Rust core alone, against a throwaway redis-server: how much of a JavaScript lock + unlock
//! cycle is Redis and the core, and (by difference with `npm run bench`) how much is crossing
//! between JavaScript and the native threads.
//!
//!   cargo run --release -p relock-core --example core_bench [-- --seconds 2]

use std::sync::Arc;
use std::time::{Duration, Instant};

use relock_core::{Client, ClientOptions, Mutex, RetryPolicy};

#[path = "../tests/support/mod.rs"]
mod support;

use support::RedisServer;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
  sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn sequential(client: &Mutex, seconds: f64) -> (f64, Duration, Duration) {
  let retry = RetryPolicy::default();
  let mut latencies = Vec::new();
  let started = Instant::now();
  let mut cycle = 0u64;
  while started.elapsed().as_secs_f64() < seconds {
    let key = format!("core:seq:{cycle}");
    let begun = Instant::now();
    let lease = client.lock(&key, 5000, &retry).await.unwrap().unwrap();
    assert!(client.unlock(&key, &lease.token).await.unwrap());
    latencies.push(begun.elapsed());
    cycle += 1;
  }
  let rate = cycle as f64 / started.elapsed().as_secs_f64();
  latencies.sort();
  (
    rate,
    percentile(&latencies, 0.5),
    percentile(&latencies, 0.99),
  )
}

async fn concurrent(client: Arc<Mutex>, loops: usize, seconds: f64) -> f64 {
  let started = Instant::now();
  let tasks: Vec<_> = (0..loops)
    .map(|loop_index| {
      let client = client.clone();
      tokio::spawn(async move {
        let retry = RetryPolicy::default();
        let mut cycles = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
          let key = format!("core:conc:{loop_index}:{cycles}");
          let lease = client.lock(&key, 5000, &retry).await.unwrap().unwrap();
          client.unlock(&key, &lease.token).await.unwrap();
          cycles += 1;
        }
        cycles
      })
    })
    .collect();
  let mut total = 0;
  for task in tasks {
    total += task.await.unwrap();
  }
  total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
  let seconds: f64 = std::env::args()
    .skip_while(|a| a != "--seconds")
    .nth(1)
    .map_or(2.0, |s| s.parse().unwrap());
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .unwrap();
  runtime.block_on(async {
    for hosts in [1, 3, 5] {
      let servers: Vec<RedisServer> = (0..hosts).map(|_| RedisServer::start()).collect();
      let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
      let client = Client::new(&urls, ClientOptions::default())
        .unwrap()
        .mutex()
        .clone();
      let (rate, p50, p99) = sequential(&client, seconds).await;
      println!(
        "{hosts} host(s), sequential lock+unlock: {rate:.0} cycles/s, p50 {} µs, p99 {} µs",
        p50.as_micros(),
        p99.as_micros()
      );
      let rate = concurrent(client.clone(), 64, seconds).await;
      println!("{hosts} host(s), 64 concurrent loops: {rate:.0} cycles/s");
    }
  });
}
