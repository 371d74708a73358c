//! What one test's server logs, and which panics it had, while every other
//! test runs in the same process.
//!
//! A global subscriber would hear every test's server, and a panic hook sees
//! every thread's panics. So a test that listens runs its body on a tokio
//! runtime of its own, on a thread of its own, where every thread the
//! runtime starts (workers and blocking threads) has the test's subscriber as
//! its default and carries the test's [`CaptureId`]. Threads that libraries
//! start themselves (sqlx's SQLite workers) are not the runtime's: what they
//! log or panic is not captured.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Dispatch;

/// Tells one capturing test's threads from all others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CaptureId(u64);

thread_local! {
    static CURRENT: Cell<Option<CaptureId>> = const { Cell::new(None) };
}

/// The capture the current thread belongs to, if any.
pub(crate) fn current() -> Option<CaptureId> {
    CURRENT.get()
}

/// Runs `test` as `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`
/// runs a test body, with `subscriber` receiving what every thread of that
/// runtime logs, and only that. A panic in `test` fails the caller.
pub(crate) async fn with_subscriber<F>(subscriber: impl Into<Dispatch>, test: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = CaptureId(NEXT.fetch_add(1, Ordering::Relaxed));
    let dispatch = subscriber.into();
    // A runtime cannot be started from a thread that is inside one (even a
    // blocking one), so the test's runtime gets a plain thread.
    let thread = std::thread::Builder::new()
        .name(format!("capture-{}", id.0))
        .spawn(move || run(id, dispatch, test))
        .expect("start the capturing test's thread");
    match tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("wait for the capturing test's thread")
    {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Everything a subscriber writes, kept for the test to read: give
/// `move || captured.clone()` as the subscriber's writer.
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run<F: Future>(id: CaptureId, dispatch: Dispatch, test: F) -> F::Output {
    let for_workers = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The guard would restore the previous default on drop; the
            // thread ends with the runtime, so it is kept for good.
            std::mem::forget(tracing::dispatcher::set_default(&for_workers));
            CURRENT.set(Some(id));
        })
        .build()
        .expect("build the capturing test's runtime");
    let _default = tracing::dispatcher::set_default(&dispatch);
    CURRENT.set(Some(id));
    runtime.block_on(test)
}
