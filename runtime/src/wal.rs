//! What Postgres's write-ahead log says changed, as logical decoding with the `test_decoding`
//! plugin writes it (`pg_logical_slot_get_changes`): the tables of each committed transaction,
//! and whether those transactions are visible yet to a new snapshot.
//!
//! ```text
//! BEGIN 543454
//! table public.bx: UPDATE: id[bigint]:1 n[bigint]:1
//! table public."user", public."a, b: c": TRUNCATE: (no-flags)
//! COMMIT 543454
//! ```

/// A committed transaction that changed tables.
#[derive(Debug, PartialEq)]
pub(crate) struct Commit {
    /// Its commit record's position in the log: the same for every instance that decodes it.
    pub lsn: i64,
    /// Its transaction id (32 bits, as the decoder gives it).
    pub xid: u32,
    /// The tables it changed, as Postgres quotes them (`public."User"`), each once.
    pub tables: Vec<String>,
}

/// The committed transactions in decoded rows `(lsn, xid, data)`, in commit order.
pub(crate) fn commits(rows: &[(i64, i64, String)]) -> Vec<Commit> {
    let mut commits = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    for (lsn, xid, data) in rows {
        if data.starts_with("BEGIN") {
            tables.clear();
        } else if data.starts_with("COMMIT") {
            if !tables.is_empty() {
                let xid = *xid as u32; // `xid` is 32 bits; it came through `xid::text::int8`
                commits.push(Commit { lsn: *lsn, xid, tables: std::mem::take(&mut tables) });
            }
        } else if let Some(changed) = changed_tables(data) {
            for table in changed {
                if !tables.iter().any(|known| known == table) {
                    tables.push(table.to_owned());
                }
            }
        }
    }
    commits
}

/// `table a, b: OPERATION: ...` → `[a, b]` (commas and colons inside quotes are a name's).
fn changed_tables(data: &str) -> Option<Vec<&str>> {
    let names = data.strip_prefix("table ")?;
    let (mut tables, mut start, mut quoted) = (Vec::new(), 0, false);
    for (at, c) in names.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                tables.push(names[start..at].trim());
                start = at + 1;
            }
            ':' if !quoted => {
                tables.push(names[start..at].trim());
                return Some(tables);
            }
            _ => {}
        }
    }
    None
}

/// Whether every transaction of `xids` is visible to `snapshot` (`pg_current_snapshot()` as
/// text, `xmin:xmax:xip,...`): a commit is in the log a moment before other sessions see it.
/// `None` if the snapshot does not parse.
pub(crate) fn visible(snapshot: &str, xids: impl IntoIterator<Item = u32>) -> Option<bool> {
    let mut parts = snapshot.trim().split(':');
    let (_xmin, xmax, running) = (parts.next()?, parts.next()?.parse::<u64>().ok()?, parts.next()?);
    let running: Vec<u64> =
        running.split(',').filter(|xid| !xid.is_empty()).map(str::parse).collect::<Result<_, _>>().ok()?;
    Some(xids.into_iter().all(|xid| {
        // The full (epoch-extended) id of `xid`: the one at or below `xmax` with its low bits.
        let full = xmax.checked_sub(u64::from((xmax as u32).wrapping_sub(xid)));
        full.is_some_and(|full| full < xmax && !running.contains(&full))
    }))
}

#[cfg(test)]
mod tests {
    use super::{Commit, commits, visible};

    fn rows(lines: &[(i64, i64, &str)]) -> Vec<(i64, i64, String)> {
        lines.iter().map(|(lsn, xid, data)| (*lsn, *xid, (*data).to_owned())).collect()
    }

    #[test]
    fn the_tables_of_each_commit_as_test_decoding_writes_them() {
        let decoded = rows(&[
            (10, 7, "BEGIN 7"),
            (10, 7, "table public.\"User\": INSERT: id[integer]:1"),
            (10, 7, "table public.bx: UPDATE: id[bigint]:1 n[bigint]:1"),
            (11, 7, "table public.bx: DELETE: id[bigint]:2"),
            (12, 7, "table public.\"user\", public.\"a, b: c\": TRUNCATE: (no-flags)"),
            (13, 7, "COMMIT 7"),
            (13, 8, "BEGIN 8"),
            (13, 8, "message: transactional: 1 prefix: p, sz: 1 content:x"),
            (14, 8, "COMMIT 8"),
            (14, 9, "BEGIN 9"),
            (15, 9, "table app.orders: INSERT: id[integer]:1 note[text]:'a: b, c'"),
            (16, 9, "COMMIT 9 (at 2026-12-07 06:30:00+00)"),
        ]);
        let tables = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            commits(&decoded),
            [
                Commit {
                    lsn: 13,
                    xid: 7,
                    tables: tables(&[
                        "public.\"User\"",
                        "public.bx",
                        "public.\"user\"",
                        "public.\"a, b: c\""
                    ]),
                },
                Commit { lsn: 16, xid: 9, tables: tables(&["app.orders"]) },
            ]
        );
    }

    #[test]
    fn a_commit_is_visible_once_no_snapshot_counts_it_running() {
        assert_eq!(visible("100:105:", [99, 104]), Some(true));
        assert_eq!(visible("100:105:101,103", [104, 103]), Some(false));
        assert_eq!(visible("100:105:", [105]), Some(false), "at or past xmax: not yet visible");
        // Epoch-extended ids: xmax in the second epoch, a 32-bit id from the end of the first.
        let xmax = (1u64 << 32) + 5;
        assert_eq!(visible(&format!("{xmax}:{xmax}:"), [u32::MAX]), Some(true));
        assert_eq!(visible(&format!("{xmax}:{xmax}:{}", (1u64 << 32) - 1), [u32::MAX]), Some(false));
        assert_eq!(visible("garbage", [1]), None);
    }
}
