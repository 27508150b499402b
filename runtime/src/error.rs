//! The error type of every fallible cache operation.

use std::time::Duration;

/// Why a cache operation failed.
///
/// Cached functions never return this: a cache failure makes them run their query instead
/// (fail-open). It is returned by [`QueryCache`](crate::QueryCache)'s own methods, by
/// `build()`, and by the generated `<fn>_invalidate` functions. Its `Display` never contains
/// a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The builder's configuration is unusable (a malformed Redis URL, say).
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// Redis answered with an error, or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The operation did not finish within the configured timeout.
    #[error("cache operation timed out after {0:?}")]
    Timeout(Duration),
    /// The cache is bypassed after repeated failures to reach Redis (circuit breaker open),
    /// until it answers again.
    #[error("cache unreachable: bypassed until it answers again")]
    Unavailable,
    /// An entry did not decode (written for a type of another shape, foreign or corrupt).
    #[error("cannot decode the cached entry: {0}")]
    Decode(String),
    /// A value could not be encoded for the cache.
    #[error("cannot encode the value for the cache: {0}")]
    Encode(String),
    /// An encoded value is larger than `max_value_bytes`: not stored (the value still goes to
    /// its caller; this error is counted and logged).
    #[error("the value is {size} bytes, more than max_value_bytes ({max}): not stored")]
    Oversized {
        /// The entry's size, encoded.
        size: usize,
        /// The builder's `max_value_bytes`.
        max: usize,
    },
}

impl CacheError {
    /// Whether this says the store could not be reached (as opposed to an answer it gave).
    pub fn is_unavailable(&self) -> bool {
        match self {
            CacheError::Timeout(_) | CacheError::Unavailable => true,
            CacheError::Redis(err) => {
                err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_refusal()
                    || err.is_connection_dropped()
            }
            _ => false,
        }
    }
}
