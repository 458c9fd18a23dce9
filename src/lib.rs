#![deny(clippy::all)]

//! The Node.js addon: maps the lock core (`relock-core`, in crates/core) to JavaScript.

/// mimalloc instead of the system allocator: the runtime's threads allocate and free small
/// buffers on every call, which glibc serves from per-thread arenas that keep growing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
