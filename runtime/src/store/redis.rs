//! The Redis backend: one multiplexed, self-reconnecting `ConnectionManager`.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::CacheError;

pub(crate) struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    /// The URL with its password masked, for `Debug` and logs.
    redacted: String,
}

impl RedisStore {
    /// Validates `url` and prepares a connection that is made on first use, so that a Redis
    /// that is down when the program starts only degrades the cache until it comes up.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, CacheError> {
        let redacted = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| CacheError::Config(format!("invalid Redis URL `{redacted}`: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(RedisStore { client, conn, redacted })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    pub async fn fetch(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> Result<(Option<Vec<u8>>, Vec<u64>), CacheError> {
        // GET then MGET, pipelined: one round trip. Not atomic, and need not be: the counters
        // are read after the entry, so a concurrent invalidation can only make the entry look
        // invalid, never an invalidated one look valid.
        let mut conn = self.conn.clone();
        let (value, gens): (Option<Vec<u8>>, Vec<Option<u64>>) =
            redis::pipe().get(key).mget(gen_keys).query_async(&mut conn).await?;
        Ok((value, gens.into_iter().map(Option::unwrap_or_default).collect()))
    }

    /// Increments the counters (and publishes `announce` on its channel, in the same
    /// pipeline, so that no invalidation reaches Redis without its announcement).
    pub async fn bump(
        &self,
        gen_keys: &[String],
        keep: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for key in gen_keys {
            pipe.incr(key, 1).ignore().pexpire(key, keep.as_millis() as i64).ignore();
        }
        if let Some((channel, message)) = announce {
            pipe.publish(channel, message).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.exec_async(&mut conn).await?;
        Ok(())
    }

    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH").arg(channel).arg(message).exec_async(&mut conn).await?;
        Ok(())
    }

    /// The client, for connections of their own (the backplane's subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let millis = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis).exec_async(&mut conn).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL").arg(key).exec_async(&mut conn).await?;
        Ok(())
    }

    pub async fn try_lock(&self, key: &str, token: &str, lease: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
        });
        let mut conn = self.conn.clone();
        UNLOCK.key(key).arg(token).invoke_async::<i64>(&mut conn).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").exec_async(&mut conn).await?;
        Ok(())
    }

    pub fn describe(&self) -> &str {
        &self.redacted
    }
}

/// `url` with the password (or a lone user-info part) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<unparsable url>".to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://me:s3cret@host"), "redis://me:***@host");
        assert_eq!(redact("rediss://s3cret@host"), "rediss://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://a:p@ss@host"), "redis://a:***@host");
        assert_eq!(redact("s3cret"), "<unparsable url>");
    }
}
