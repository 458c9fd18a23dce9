#![deny(clippy::all)]

pub mod core;
pub mod binding;

/// Lock traffic is light on CPU: two worker threads serve any number of hosts and calls, and
/// leave the other cores to the application (the default would start one per core).
const RUNTIME_WORKER_THREADS: usize = 2;

#[napi_derive::module_init]
fn init() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(RUNTIME_WORKER_THREADS)
    .thread_name("relock")
    .enable_all()
    .build()
    .expect("the tokio runtime starts");
  napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
}
