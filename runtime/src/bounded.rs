//! The future of a store operation under the cache's timeout and circuit breaker
//! (`Engine::bounded`); how it ended is handed to a [`Settle`] (the breaker's bookkeeping).
//!
//! A future of its own rather than an `async fn`: the operation's future, most of a lookup's
//! state, is then moved once, into its timer, instead of once more per layer (each move
//! copies all of it, on every call).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Timeout;

use crate::CacheError;

/// What bounds store operations, and records how each ended.
pub(crate) trait Settle {
    /// How long an operation may take.
    fn timeout(&self) -> Duration;
    /// Whether operations on `shard`'s names fail at once (its breaker is open).
    fn is_open(&self, shard: usize) -> bool;
    /// Records how an operation on `shard`'s names ended.
    fn settle<T>(&self, shard: usize, result: &Result<T, CacheError>);
}

pin_project! {
    /// `op` within the cache's timeout; fails at once if its breaker was open when it was made.
    pub(crate) struct Bounded<'a, S, F> {
        settle: &'a S,
        shard: usize,
        open: bool,
        #[pin]
        op: Timeout<F>,
    }
}

impl<'a, S: Settle, F: Future> Bounded<'a, S, F> {
    /// `op` bounded by `settle`'s timeout, counted from now, under `shard`'s breaker.
    pub(crate) fn new(settle: &'a S, shard: usize, op: F) -> Self {
        let open = settle.is_open(shard);
        Bounded { settle, shard, open, op: tokio::time::timeout(settle.timeout(), op) }
    }
}

impl<T, S: Settle, F: Future<Output = Result<T, CacheError>>> Future for Bounded<'_, S, F> {
    type Output = Result<T, CacheError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.open {
            return Poll::Ready(Err(CacheError::Unavailable));
        }
        let timeout = this.settle.timeout();
        let result = ready!(this.op.poll(cx)).unwrap_or(Err(CacheError::Timeout(timeout)));
        this.settle.settle(*this.shard, &result);
        Poll::Ready(result)
    }
}
