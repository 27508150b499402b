//! Every Redis key and channel name a cache uses, in one place. With `{ks}` the keyspace (the
//! prefix; on a Redis Cluster the prefix as a hash tag, `{prefix}`, so that all of them share
//! one slot):
//!
//! | name | what |
//! |---|---|
//! | `{ks}:{fn}:v{version}:{hash}` | an entry (see `key`) |
//! | `{entry}:gen` | the entry's own invalidation counter |
//! | `{entry}:lock` | the entry's lease (`lock = true`) |
//! | `{ks}:tag:{tag}` | a tag's invalidation counter |
//! | `{ks}:tagat:{tag}` | a tag's mark: the tag epoch of its last invalidation (`result_tags`) |
//! | `{ks}:tagat` | the tag epoch, which every tag invalidation moves on |
//! | `{ks}:table:{table}` | a table's invalidation counter (`tables = ...`) |
//! | `{ks}:table:{table}:seen` | the table's versions its counter follows (a change feed) |
//! | `{ks}:ns` | the namespace's invalidation counter, on which every entry depends |
//! | `{ks}:bus` | the backplane's channel (see `backplane`) |
//! | `{ks}:bus:hb:{instance}` | an instance's heartbeat channel (see `local`) |
//! | `{ks}:stats:{instance}` | an instance's `function_stats()` (`.publish_stats(interval)`) |

use crate::key;

/// What follows an entry's key in the name of its invalidation counter.
const COUNTER_SUFFIX: &str = ":gen";
/// What follows an entry's key in the name of its lease.
const LEASE_SUFFIX: &str = ":lock";

/// The names under one prefix.
pub(crate) struct Keyspace {
    /// What starts every name.
    start: String,
    namespace_counter: String,
    /// What starts a tag's counter, and a tag's mark.
    tag_start: String,
    mark_start: String,
    bus: String,
    /// The schema of unqualified table names (`public` on Postgres): `public.users` and
    /// `users` are one table.
    default_schema: String,
}

impl Keyspace {
    pub fn new(prefix: &str, cluster: bool, default_schema: &str) -> Keyspace {
        let start = if cluster { format!("{{{prefix}}}") } else { prefix.to_owned() };
        Keyspace {
            namespace_counter: format!("{start}:ns"),
            tag_start: format!("{start}:tag:"),
            mark_start: format!("{start}:tagat:"),
            bus: format!("{start}:bus"),
            start,
            default_schema: default_schema.to_owned(),
        }
    }

    /// What starts every name.
    pub fn start(&self) -> &str {
        &self.start
    }

    /// Whether `key` is one of these names.
    pub fn owns(&self, key: &str) -> bool {
        key.starts_with(&self.start)
    }

    pub fn namespace_counter(&self) -> &str {
        &self.namespace_counter
    }

    pub fn tag_counter(&self, tag: &str) -> String {
        [&self.tag_start, tag].concat()
    }

    /// The function and version of the entry `key` (`{ks}:{fn}:v{version}:{hash}`), if it is
    /// one of this keyspace's entries.
    pub fn function_of<'a>(&self, key: &'a str) -> Option<(&'a str, u32)> {
        let rest = key.strip_prefix(self.start.as_str())?.strip_prefix(':')?;
        let mut parts = rest.rsplitn(3, ':');
        let (hash, version, name) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let version = version.strip_prefix('v')?.parse().ok()?;
        hex.then_some((name, version))
    }

    /// The `SCAN` pattern of every name of this keyspace (glob characters of the prefix
    /// escaped).
    pub fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.start.len() + 3);
        for c in self.start.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":*");
        pattern
    }

    /// Where an instance publishes its `function_stats()`.
    pub fn stats(&self, instance: u64) -> String {
        format!("{}:stats:{instance:016x}", self.start)
    }

    /// `name` (one of these names) without the keyspace and its `:`.
    pub fn relative<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.start.as_str()).and_then(|rest| rest.strip_prefix(':')).unwrap_or(name)
    }

    /// The counters of `tags`.
    pub fn tag_counters<T: AsRef<str>>(&self, tags: &[T]) -> Vec<String> {
        tags.iter().map(|tag| self.tag_counter(tag.as_ref())).collect()
    }

    /// The tag epoch: a number that every tag invalidation moves on, and records as the
    /// invalidated tags' marks. A query of a function with `result_tags` reads it before it
    /// runs: a mark after it says that tag was invalidated while the query ran.
    pub fn tag_epoch(&self) -> &str {
        &self.mark_start[..self.mark_start.len() - 1]
    }

    /// The marks of the tag counters among `counters` (see [`tag_epoch`](Self::tag_epoch)).
    pub fn tag_marks(&self, counters: &[String]) -> Vec<String> {
        let tags = counters.iter().filter_map(|counter| counter.strip_prefix(self.tag_start.as_str()));
        tags.map(|tag| [&self.mark_start, tag].concat()).collect()
    }

    /// A table's invalidation counter (see [`table_name`]), its default schema dropped.
    pub fn table_counter(&self, table: &str) -> String {
        self.normalised_table_counter(&table_name(table))
    }

    /// [`table_counter`](Self::table_counter) of a name normalised already (as the macro
    /// emits them): no parsing on a call's path.
    fn normalised_table_counter(&self, table: &str) -> String {
        let unqualified = table
            .strip_prefix(self.default_schema.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(table);
        [&self.start, ":table:", unqualified].concat()
    }

    /// The lease of the instance that reads Postgres's write-ahead log for this prefix (see
    /// `watch`): its token, `{id}:starting` or `{id}:ready`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn wal_reader(&self) -> String {
        [&self.start, ":wal:reader"].concat()
    }

    /// The tables that the programs reading this prefix's write-ahead log depend on.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn wal_tables(&self) -> String {
        [&self.start, ":wal:tables"].concat()
    }

    /// What a change feed has applied to a table's counter (see `watch`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn table_seen(&self, table: &str) -> String {
        [&self.table_counter(table), ":seen"].concat()
    }

    /// The entry of function `head` (see `key::head`) for the arguments that hash to `hash`.
    pub fn entry(&self, head: &str, hash: u128) -> String {
        key::join(&self.start, head, hash, "")
    }

    /// The entry of a call, with the counters of its `tags` and `tables`.
    pub fn target(&self, head: &str, hash: u128, tags: &[String], tables: &[&str]) -> Target {
        let key_counter = key::join(&self.start, head, hash, COUNTER_SUFFIX);
        let tags = tags.iter().map(|tag| self.tag_counter(tag));
        Target {
            key_counter,
            tags: tags.chain(tables.iter().map(|table| self.normalised_table_counter(table))).collect(),
            result_tagged: false,
        }
    }

    /// The backplane's channel.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// The heartbeat channel of the instance numbered `instance`.
    pub fn heartbeat(&self, instance: u64) -> String {
        format!("{}:hb:{instance:016x}", self.bus)
    }
}

/// A table's name as the cache knows it, from SQL-like text (`users`, `App."Users"`): an
/// unquoted part folded to lower case, a quoted one kept, and quoted only if it has upper case
/// letters; parts joined with `.`. The macro normalises the names it finds the same way.
pub(crate) fn table_name(text: &str) -> String {
    table_parts(text)
        .into_iter()
        .map(|part| if part.chars().any(char::is_uppercase) { format!("\"{part}\"") } else { part })
        .collect::<Vec<_>>()
        .join(".")
}

/// The identifiers of a table's name (`app."My.Orders"` → `app`, `My.Orders`): a quoted part
/// as written, an unquoted one folded to lower case.
pub(crate) fn table_parts(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (part, tail) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (quoted[..end].to_owned(), quoted.get(end + 1..).unwrap_or(""))
            }
            None => {
                let (part, tail) = rest.split_once('.').map_or((rest, ""), |(part, tail)| (part, tail));
                (part.trim().to_lowercase(), tail)
            }
        };
        parts.push(part);
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    parts
}

/// The invalidation counter of the entry `key`.
pub(crate) fn key_counter(key: &str) -> String {
    [key, COUNTER_SUFFIX].concat()
}

/// The lease of the entry `key`.
pub(crate) fn lease(key: &str) -> String {
    [key, LEASE_SUFFIX].concat()
}

/// The entry whose counter or lease `name` is, or `name` itself.
pub(crate) fn entry_of(name: &str) -> &str {
    name.strip_suffix(COUNTER_SUFFIX).or_else(|| name.strip_suffix(LEASE_SUFFIX)).unwrap_or(name)
}

/// The names of the counters a lookup reads: inline for up to `INLINE_COUNTERS`.
pub(crate) type CounterNames<'a> = smallvec::SmallVec<[&'a str; crate::stamp::INLINE_COUNTERS]>;

/// Where a call's entry lives, and the invalidation counters it depends on. Built on every
/// call, so the key and its counter's name share one allocation, and a call without tags makes
/// no other.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The key, then `COUNTER_SUFFIX`.
    key_counter: String,
    /// The tags' and tables' counters.
    tags: Vec<String>,
    /// Whether its entries carry tags computed from their values (`result_tags`), checked
    /// with the counters above.
    pub result_tagged: bool,
}

impl Target {
    /// The entry's key.
    pub fn key(&self) -> &str {
        &self.key_counter[..self.key_counter.len() - COUNTER_SUFFIX.len()]
    }

    /// The tags' and tables' counters of the entry (those besides the namespace's and the
    /// key's).
    pub fn depends(&self) -> &[String] {
        &self.tags
    }

    /// The names of the counters the entry depends on: the namespace's first, the key's, then
    /// its tags'.
    pub fn counters<'a>(&'a self, keyspace: &'a Keyspace) -> CounterNames<'a> {
        let mut names = CounterNames::new();
        names.push(keyspace.namespace_counter());
        names.push(&self.key_counter);
        names.extend(self.tags.iter().map(String::as_str));
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of one call with a tag, on a server and on a cluster: every name this crate
    /// writes to Redis (or publishes on) is one of these.
    #[test]
    fn every_name() {
        for (cluster, ks) in [(false, "app"), (true, "{app}")] {
            let keyspace = Keyspace::new("app", cluster, "public");
            let head = key::head("users::by_id", 2);
            let target = keyspace.target(&head, 0xab, &["user:7".to_owned()], &["public.users"]);
            let entry = format!("{ks}:users::by_id:v2:000000000000000000000000000000ab");
            assert_eq!(target.key(), entry);
            assert_eq!(keyspace.entry(&head, 0xab), entry);
            assert_eq!(
                target.counters(&keyspace).to_vec(),
                [
                    format!("{ks}:ns"),
                    format!("{entry}:gen"),
                    format!("{ks}:tag:user:7"),
                    format!("{ks}:table:users")
                ]
            );
            assert_eq!(key_counter(&entry), format!("{entry}:gen"));
            assert_eq!(lease(&entry), format!("{entry}:lock"));
            assert_eq!(keyspace.bus(), format!("{ks}:bus"));
            assert_eq!(keyspace.heartbeat(0xff), format!("{ks}:bus:hb:00000000000000ff"));
            assert_eq!(keyspace.start(), ks);
            assert_eq!(keyspace.wal_reader(), format!("{ks}:wal:reader"));
            assert_eq!(keyspace.wal_tables(), format!("{ks}:wal:tables"));
            assert_eq!(keyspace.table_counter("users"), keyspace.table_counter("public.users"));
            assert_eq!(keyspace.table_counter("App.\"Users\""), format!("{ks}:table:app.\"Users\""));
            assert_eq!(keyspace.table_counter("Users"), keyspace.table_counter("\"users\""));
            assert_eq!(table_parts("App.\"My.Orders\""), ["app", "My.Orders"]);
            assert!(keyspace.owns(&entry) && !keyspace.owns("other:key"));
            assert_eq!(Keyspace::new("a*[b]", false, "public").pattern(), "a\\*\\[b\\]:*");
            assert_eq!(keyspace.tag_epoch(), format!("{ks}:tagat"));
            assert_eq!(keyspace.function_of(&entry), Some(("users::by_id", 2)));
            assert_eq!(keyspace.function_of(&format!("{entry}:gen")), None, "a counter");
            assert_eq!(keyspace.function_of(&format!("{ks}:tag:v0:x")), None);
            assert_eq!(keyspace.relative(&format!("{ks}:tag:user:7")), "tag:user:7");
            assert_eq!(keyspace.stats(0xff), format!("{ks}:stats:00000000000000ff"));
            let counters = target.counters(&keyspace).iter().map(|c| c.to_string()).collect::<Vec<_>>();
            assert_eq!(keyspace.tag_marks(&counters), [format!("{ks}:tagat:user:7")], "tags only");
        }
    }
}
