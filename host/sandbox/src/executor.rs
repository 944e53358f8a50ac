//! Where an attempt's call runs: a future on the calling thread's own
//! single-threaded tokio runtime, raced against its deadline and its
//! [`Interrupt`].
//!
//! The guest runs on a wasmtime fiber. While it computes, the future is
//! being polled and nothing else on this thread runs: the epoch callback
//! stops it at its deadline (see `deadline`). While it is blocked in a WASI
//! host call (a sleep, `poll`, a stream), the host call is a pending future:
//! the fiber is suspended, and the deadline timer or the interrupt ends the
//! race. Dropping the call's future then unwinds the guest's stack, and the
//! attempt ends at once whatever the guest was waiting for.
//!
//! The runtime is the thread's own, made on first use and kept for the
//! thread's life (a worker thread runs many attempts). A caller that is
//! itself inside a tokio runtime (an async server handler) cannot block its
//! thread on another runtime: there the attempt runs on a scoped thread.

use std::cell::OnceCell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use tokio::runtime::{Builder, Runtime};
use weft_core::Interrupt;

/// Why a call ended before its future did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// The deadline passed while the guest was blocked in a host call.
    Deadline,
    /// The interrupt fired.
    Interrupted,
}

thread_local! {
    static RUNTIME: OnceCell<Result<Runtime, String>> = const { OnceCell::new() };
}

/// Runs `call` to its end, unless `deadline` passes or `interrupt` fires
/// first. `Err(reason)` of the outer result when no runtime can be made.
pub(crate) fn run_until<F>(
    call: F,
    deadline: Option<Instant>,
    interrupt: &Interrupt,
) -> Result<Result<F::Output, Stopped>, String>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("weft-attempt".into())
                .spawn_scoped(scope, || run_here(call, deadline, interrupt))
                .map_err(|error| format!("cannot start a thread for the attempt: {error}"))?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }
    run_here(call, deadline, interrupt)
}

fn run_here<F: Future>(
    call: F,
    deadline: Option<Instant>,
    interrupt: &Interrupt,
) -> Result<Result<F::Output, Stopped>, String> {
    RUNTIME.with(|cell| {
        let runtime = cell.get_or_init(|| {
            Builder::new_current_thread()
                .enable_time()
                .enable_io()
                .build()
                .map_err(|error| format!("cannot start the attempt's async runtime: {error}"))
        });
        let runtime = runtime.as_ref().map_err(Clone::clone)?;
        Ok(runtime.block_on(race(call, deadline, interrupt)))
    })
}

async fn race<F: Future>(
    call: F,
    deadline: Option<Instant>,
    interrupt: &Interrupt,
) -> Result<F::Output, Stopped> {
    let mut call = pin!(call);
    // Made inside the runtime: a timer needs its time driver.
    let mut timer = pin!(deadline.map(|at| tokio::time::sleep_until(at.into())));
    poll_fn(|cx| {
        if interrupt.poll_fired(cx).is_ready() {
            return Poll::Ready(Err(Stopped::Interrupted));
        }
        // The call first: a guest that returned by its deadline keeps its result.
        if let Poll::Ready(output) = call.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if let Some(timer) = timer.as_mut().as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Err(Stopped::Deadline));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_call_that_ends_keeps_its_output() {
        let interrupt = Interrupt::new();
        let out = run_until(async { 7 }, None, &interrupt).expect("runtime");
        assert_eq!(out, Ok(7));
    }

    #[test]
    fn a_pending_call_ends_at_its_deadline() {
        let interrupt = Interrupt::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        let out = run_until(std::future::pending::<()>(), Some(deadline), &interrupt);
        assert_eq!(out.expect("runtime"), Err(Stopped::Deadline));
        assert!(Instant::now() >= deadline, "never before the deadline");
    }

    #[test]
    fn a_pending_call_ends_when_interrupted_from_another_thread() {
        let interrupt = Interrupt::new();
        let firing = interrupt.clone();
        let (started, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            ready.recv().expect("the call started");
            firing.fire();
        });
        let call = async {
            started.send(()).expect("the firing thread waits");
            std::future::pending::<()>().await
        };
        let out = run_until(call, None, &interrupt);
        assert_eq!(out.expect("runtime"), Err(Stopped::Interrupted));
        thread.join().expect("the firing thread");
    }

    #[test]
    fn inside_an_async_runtime_the_call_runs_on_its_own_thread() {
        let outer = Builder::new_current_thread().build().expect("runtime");
        let interrupt = Interrupt::new();
        let out = outer.block_on(async {
            let deadline = Instant::now() + Duration::from_millis(5);
            run_until(std::future::pending::<()>(), Some(deadline), &interrupt)
        });
        assert_eq!(out.expect("runtime"), Err(Stopped::Deadline));
    }
}
