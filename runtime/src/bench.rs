//! Hooks for the benchmark binary: the pieces of one lifecycle call timed
//! separately. Not part of the supported API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::MemorySink;
use crate::sandbox::Mode;

/// Time to create a store (WASI context, gate, limits) and instantiate.
pub async fn instantiate(mode: &Mode) -> Duration {
    let mut store = mode.new_store(Arc::new(MemorySink::default()), Default::default());
    let start = Instant::now();
    let instance = mode
        .pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let t = start.elapsed();
    std::hint::black_box(instance);
    t
}

/// Per-call time of `n` `info` calls on one live instance (the smallest
/// lifecycle call: no arguments, three short strings back).
pub async fn info_calls(mode: &Mode, n: u32) -> Duration {
    let mut store = mode.new_store(Arc::new(MemorySink::default()), Default::default());
    let instance = mode
        .pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let lc = instance.p2pbroker_mode_lifecycle();
    let start = Instant::now();
    for _ in 0..n {
        // The deadline is absolute: keep it ahead of the clock.
        store.set_epoch_deadline(1_000);
        lc.call_info(&mut store).await.expect("info");
    }
    start.elapsed() / n
}
