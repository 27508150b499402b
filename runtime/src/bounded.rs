//! The future of a store operation under the cache's timeout and circuit breaker
//! ([`QueryCache::bounded`]).
//!
//! A future of its own rather than an `async fn`: the operation's future, most of a lookup's
//! state, is then moved once, into its timer, instead of once more per layer; each such
//! move is a copy of about a kilobyte on every call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Timeout;

use crate::{CacheError, QueryCache};

pin_project! {
    /// `op` within the cache's timeout; fails at once if the breaker was open when it was made.
    pub(crate) struct Bounded<'a, F> {
        cache: &'a QueryCache,
        open: bool,
        #[pin]
        op: Timeout<F>,
    }
}

impl<'a, F: Future> Bounded<'a, F> {
    /// `op` bounded by the cache's timeout, counted from now.
    pub(crate) fn new(cache: &'a QueryCache, op: F) -> Self {
        let inner = cache.inner();
        Bounded { cache, open: inner.health.is_open(), op: tokio::time::timeout(inner.settings.timeout, op) }
    }
}

impl<T, F: Future<Output = Result<T, CacheError>>> Future for Bounded<'_, F> {
    type Output = Result<T, CacheError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.open {
            return Poll::Ready(Err(CacheError::Unavailable));
        }
        let timeout = this.cache.inner().settings.timeout;
        let result = ready!(this.op.poll(cx)).unwrap_or(Err(CacheError::Timeout(timeout)));
        this.cache.settle(&result);
        Poll::Ready(result)
    }
}
