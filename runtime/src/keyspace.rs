//! Every Redis key and channel name a cache uses, in one place. With `{ks}` the keyspace:
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
//!
//! On a server `{ks}` is the prefix. On a Redis Cluster the keyspace is cut into *shards*, each
//! the prefix followed by a hash tag of its own, `{prefix}{{tag}}`, whose slots are spread
//! evenly over the slot space, so that a prefix's entries spread over every master. An entry
//! lives in the shard its hash picks, with its own counter and lease; the counters it depends
//! on that entries share (namespace, tags, tables: *shared counters*) have one copy in every
//! shard, so that a lookup reads its entry and its counters on one node, in one slot (and
//! client tracking keeps them exact there, as on a server). An invalidation increments every
//! copy. The names that are no entry's (tag epoch and marks, bus, stats, change feed's) live in
//! the first shard. Elsewhere in the crate a shared counter is named by its first shard's copy
//! (its *logical* name: invalidations, queues, backplane messages, the local tier); lookups
//! use their shard's copies.

use std::borrow::Cow;

use crate::key;

/// What follows an entry's key in the name of its invalidation counter.
const COUNTER_SUFFIX: &str = ":gen";
/// What follows an entry's key in the name of its lease.
const LEASE_SUFFIX: &str = ":lock";
/// A Redis Cluster's slots.
const SLOTS: u32 = 16_384;
/// What follows a shard's start in the names of its shared counters.
const SHARED: [&str; 3] = [":ns", ":tag:", ":table:"];

/// The names under one prefix.
pub(crate) struct Keyspace {
    /// What starts every name: the prefix, and on a cluster `{`.
    head: String,
    /// The first shard's start: the names that are no entry's.
    start: String,
    shards: Vec<Shard>,
    mark_start: String,
    bus: String,
    /// The schema of unqualified table names (`public` on Postgres): `public.users` and
    /// `users` are one table.
    default_schema: String,
}

/// One shard's names.
struct Shard {
    start: String,
    namespace_counter: String,
    /// What starts a tag's counter.
    tag_start: String,
}

impl Shard {
    fn new(start: String) -> Shard {
        Shard { namespace_counter: format!("{start}:ns"), tag_start: format!("{start}:tag:"), start }
    }
}

/// The hash tags of `count` shards: the first tag (in `0`, `1`, ... as hexadecimal) whose slot
/// falls in each `count`th of the slot space, so that shards spread as evenly as slots do.
pub(crate) fn shard_tags(count: u16) -> Vec<String> {
    let count = u32::from(count.max(1));
    (0..count)
        .map(|i| {
            let range = i * SLOTS / count..(i + 1) * SLOTS / count;
            (0u32..)
                .map(|n| format!("{n:x}"))
                .find(|tag| {
                    range.contains(
                        &(u32::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS),
                    )
                })
                .expect("every range of slots has a tag")
        })
        .collect()
}

impl Keyspace {
    /// The names of `prefix`: on a server (`shards` is `None`), or on a cluster, in `shards`
    /// shards.
    pub fn new(prefix: &str, shards: Option<u16>, default_schema: &str) -> Keyspace {
        let (head, shards): (String, Vec<Shard>) = match shards {
            None => (prefix.to_owned(), vec![Shard::new(prefix.to_owned())]),
            Some(count) => (
                format!("{prefix}{{"),
                shard_tags(count).iter().map(|tag| Shard::new(format!("{prefix}{{{tag}}}"))).collect(),
            ),
        };
        let start = shards[0].start.clone();
        Keyspace {
            mark_start: format!("{start}:tagat:"),
            bus: format!("{start}:bus"),
            head,
            start,
            shards,
            default_schema: default_schema.to_owned(),
        }
    }

    /// Whether `key` is one of these names.
    pub fn owns(&self, key: &str) -> bool {
        self.split(key).is_some()
    }

    /// The shard of `name` and what follows its start.
    fn split<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        if self.shards.len() == 1 {
            return name.strip_prefix(self.start.as_str()).map(|rest| (0, rest));
        }
        let rest = name.strip_prefix(self.head.as_str())?;
        let (tag, rest) = rest.split_once('}')?;
        let shard = self
            .shards
            .iter()
            .position(|shard| shard.start[self.head.len()..].strip_suffix('}') == Some(tag))?;
        Some((shard, rest))
    }

    /// How many shards there are (1 on a server).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard of `name` (the first for a name of none).
    pub fn shard_of(&self, name: &str) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        self.split(name).map_or(0, |(shard, _)| shard)
    }

    /// Whether `name` is in shard `shard` (a name of none is in the first).
    pub fn in_shard(&self, name: &str, shard: usize) -> bool {
        self.shard_of(name) == shard
    }

    /// The namespace's counter's copy in `shard`.
    pub fn namespace_counter_in(&self, shard: usize) -> &str {
        &self.shards[shard].namespace_counter
    }

    /// The shard an entry of `hash` lives in.
    fn shard(&self, hash: u128) -> usize {
        ((hash >> 64) as u64 % self.shards.len() as u64) as usize
    }

    /// The namespace's counter (its logical name).
    pub fn namespace_counter(&self) -> &str {
        &self.shards[0].namespace_counter
    }

    /// A tag's counter (its logical name).
    pub fn tag_counter(&self, tag: &str) -> String {
        [&self.shards[0].tag_start, tag].concat()
    }

    /// The function and version of the entry `key` (`{ks}:{fn}:v{version}:{hash}`), if it is
    /// one of this keyspace's entries.
    pub fn function_of<'a>(&self, key: &'a str) -> Option<(&'a str, u32)> {
        let rest = self.split(key)?.1.strip_prefix(':')?;
        let mut parts = rest.rsplitn(3, ':');
        let (hash, version, name) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let version = version.strip_prefix('v')?.parse().ok()?;
        hex.then_some((name, version))
    }

    /// The `SCAN` pattern of every name of this keyspace (glob characters of the prefix
    /// escaped).
    pub fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.head.len() + 5);
        for c in self.head.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(if self.shards.len() == 1 { ":*" } else { "*}:*" });
        pattern
    }

    /// On a cluster, where the number of shards of `prefix` is recorded (the same name whatever
    /// that number: `prefix{layout}:shards`), so that every instance and tool cuts the
    /// keyspace alike.
    pub fn layout(prefix: &str) -> String {
        format!("{prefix}{{layout}}:shards")
    }

    /// Where an instance publishes its `function_stats()`.
    pub fn stats(&self, instance: u64) -> String {
        format!("{}:stats:{instance:016x}", self.start)
    }

    /// `name` (one of these names) without its shard's start and its `:`.
    pub fn relative<'a>(&self, name: &'a str) -> &'a str {
        self.split(name).and_then(|(_, rest)| rest.strip_prefix(':')).unwrap_or(name)
    }

    /// `relative` (a name without its start) in the shard of `key`.
    pub fn near(&self, key: &str, relative: &str) -> String {
        let shard = self.split(key).map_or(0, |(shard, _)| shard);
        format!("{}:{relative}", self.shards[shard].start)
    }

    /// The logical name of the counter `name` (see the module docs): a shared counter's copy
    /// in another shard is named by the first shard's.
    pub fn logical<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match self.split(name) {
            Some((shard, rest)) if shard > 0 && is_shared(rest) => {
                Cow::Owned([self.start.as_str(), rest].concat())
            }
            _ => Cow::Borrowed(name),
        }
    }

    /// The names an increment of `counters` (logical names, or an entry's) increments: every
    /// copy of a shared counter.
    pub fn copies(&self, counters: &[String]) -> Vec<String> {
        let mut copies = Vec::with_capacity(counters.len());
        for counter in counters {
            match self.split(counter) {
                Some((_, rest)) if self.shards.len() > 1 && is_shared(rest) => {
                    copies.extend(self.shards.iter().map(|shard| [shard.start.as_str(), rest].concat()));
                }
                _ => copies.push(counter.clone()),
            }
        }
        copies
    }

    /// The counters of `tags` (logical names).
    pub fn tag_counters<T: AsRef<str>>(&self, tags: &[T]) -> Vec<String> {
        tags.iter().map(|tag| self.tag_counter(tag.as_ref())).collect()
    }

    /// The counters of `tags` in the shard of the entry `key`.
    pub fn tag_counters_near<T: AsRef<str>>(&self, key: &str, tags: &[T]) -> Vec<String> {
        let shard = &self.shards[self.split(key).map_or(0, |(shard, _)| shard)];
        tags.iter().map(|tag| [&shard.tag_start, tag.as_ref()].concat()).collect()
    }

    /// The tag epoch: a number that every tag invalidation moves on, and records as the
    /// invalidated tags' marks. A query of a function with `result_tags` reads it before it
    /// runs: a mark after it says that tag was invalidated while the query ran.
    pub fn tag_epoch(&self) -> &str {
        &self.mark_start[..self.mark_start.len() - 1]
    }

    /// The marks of the tag counters among `counters` (any shard's copies; see
    /// [`tag_epoch`](Self::tag_epoch)).
    pub fn tag_marks(&self, counters: &[String]) -> Vec<String> {
        let tags = counters
            .iter()
            .filter_map(|counter| self.split(counter).and_then(|(_, rest)| rest.strip_prefix(":tag:")));
        tags.map(|tag| [&self.mark_start, tag].concat()).collect()
    }

    /// A table's invalidation counter (see [`table_name`]), its default schema dropped
    /// (its logical name).
    pub fn table_counter(&self, table: &str) -> String {
        self.normalised_table_counter(0, &table_name(table))
    }

    /// [`table_counter`](Self::table_counter) of a name normalised already (as the macro
    /// emits them), in `shard`: no parsing on a call's path.
    fn normalised_table_counter(&self, shard: usize, table: &str) -> String {
        let unqualified = table
            .strip_prefix(self.default_schema.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(table);
        [&self.shards[shard].start, ":table:", unqualified].concat()
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
        key::join(&self.shards[self.shard(hash)].start, head, hash, "")
    }

    /// The entry of a call, with the counters of its `tags` and `tables` (in its shard).
    pub fn target(&self, head: &str, hash: u128, tags: &[String], tables: &[&str]) -> Target {
        let at = self.shard(hash);
        let shard = &self.shards[at];
        let key_counter = key::join(&shard.start, head, hash, COUNTER_SUFFIX);
        let tags = tags.iter().map(|tag| [&shard.tag_start, tag.as_str()].concat());
        Target {
            key_counter,
            tags: tags.chain(tables.iter().map(|table| self.normalised_table_counter(at, table))).collect(),
            shard: at as u16,
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

/// Whether what follows a shard's start makes a shared counter's name.
fn is_shared(rest: &str) -> bool {
    rest == SHARED[0] || rest.starts_with(SHARED[1]) || rest.starts_with(SHARED[2])
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
    /// The keyspace's shard it lives in.
    shard: u16,
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
        names.push(&keyspace.shards[usize::from(self.shard)].namespace_counter);
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
        for (shards, ks) in [(None, "app"), (Some(1), "app{0}")] {
            let keyspace = Keyspace::new("app", shards, "public");
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
            assert_eq!(keyspace.wal_reader(), format!("{ks}:wal:reader"));
            assert_eq!(keyspace.wal_tables(), format!("{ks}:wal:tables"));
            assert_eq!(keyspace.table_counter("users"), keyspace.table_counter("public.users"));
            assert_eq!(keyspace.table_counter("App.\"Users\""), format!("{ks}:table:app.\"Users\""));
            assert_eq!(keyspace.table_counter("Users"), keyspace.table_counter("\"users\""));
            assert_eq!(table_parts("App.\"My.Orders\""), ["app", "My.Orders"]);
            assert!(keyspace.owns(&entry) && !keyspace.owns("other:key"));
            assert_eq!(Keyspace::new("a*[b]", None, "public").pattern(), "a\\*\\[b\\]:*");
            assert_eq!(Keyspace::new("a*", Some(4), "public").pattern(), "a\\*{*}:*");
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

    fn slot(name: &str) -> u16 {
        let tag =
            name.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map_or(name, |(tag, _)| tag);
        crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS as u16
    }

    /// On a cluster, entries spread over the shards, each shard's slot in its own sixteenth of
    /// the slot space; a lookup's names share its entry's slot; an invalidation reaches every
    /// copy, and every copy names the same logical counter.
    #[test]
    fn shards_spread_and_keep_a_lookup_in_one_slot() {
        let keyspace = Keyspace::new("app", Some(16), "public");
        let slots: Vec<u32> =
            shard_tags(16).iter().map(|tag| u32::from(slot(&format!("{{{tag}}}")))).collect();
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(*slot * 16 / SLOTS, i as u32, "shard {i} in its sixteenth: {slots:?}");
        }
        let head = key::head("f", 0);
        let mut used = std::collections::HashSet::new();
        for n in 0..200u128 {
            let hash = n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
            let target = keyspace.target(&head, hash, &["user:7".to_owned()], &["users"]);
            let names = target.counters(&keyspace);
            assert!(names.iter().all(|name| slot(name) == slot(target.key())), "{names:?}");
            assert!(keyspace.owns(target.key()) && keyspace.function_of(target.key()) == Some(("f", 0)));
            let logical: Vec<String> = names.iter().map(|name| keyspace.logical(name).into_owned()).collect();
            assert_eq!(logical[0], keyspace.namespace_counter());
            assert_eq!(logical[2], keyspace.tag_counter("user:7"));
            assert_eq!(logical[3], keyspace.table_counter("public.users"));
            assert_eq!(logical[1], names[1], "an entry's own counter is its only copy");
            assert_eq!(
                keyspace.tag_marks(&[names[2].to_owned()]),
                [format!("{}:tagat:user:7", keyspace.start)]
            );
            assert_eq!(keyspace.tag_counters_near(target.key(), &["user:7"]), [names[2]]);
            assert_eq!(keyspace.near(target.key(), "tag:user:7"), names[2]);
            assert_eq!(keyspace.relative(names[2]), "tag:user:7");
            used.insert(slot(target.key()));
        }
        assert_eq!(used.len(), 16, "200 entries use every shard");
        let copies = keyspace.copies(&[keyspace.tag_counter("t"), "app{0}:f:v0:x:gen".to_owned()]);
        assert_eq!(copies.len(), 17);
        let copy_slots: std::collections::HashSet<u16> = copies[..16].iter().map(|c| slot(c)).collect();
        assert_eq!(copy_slots.len(), 16, "one copy per shard: {copies:?}");
        assert!(!keyspace.owns("app:x") && !keyspace.owns("app{zz}:x") && !keyspace.owns("apps{0}:x"));
    }
}
