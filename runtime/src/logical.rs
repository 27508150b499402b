//! What Postgres's write-ahead log says changed, as logical decoding with the `test_decoding`
//! plugin writes it (`pg_logical_slot_get_changes`): the tables that committed transactions
//! changed, and whether those transactions are visible yet to a new snapshot.
//!
//! ```text
//! BEGIN 543454
//! table public.bx: UPDATE: id[bigint]:1 n[bigint]:1
//! table public."user", public."a, b: c": TRUNCATE: (no-flags)
//! COMMIT 543454
//! ```

/// What changed since the slot `$1` was last read, grouped in Postgres: a row per list of
/// tables that a change names (`public.bx`, or a `TRUNCATE`'s `public.a, public.b`) with the
/// position of its last change and the ids of the transactions that made them (the decoder
/// gives committed transactions only). Grouped there, a busy table costs one row per read,
/// not one per changed row. (A name without a `"` anywhere in its row ends at the first `:`;
/// otherwise the pattern reads quotes.)
pub(crate) const CHANGES: &str = r#"SELECT head, (max(lsn) - '0/0'::pg_lsn)::int8, array_agg(DISTINCT xid::text::int8)
FROM (
    SELECT lsn, xid, CASE WHEN strpos(data, '"') = 0 THEN split_part(substr(data, 7), ':', 1)
                          ELSE substring(data FROM '^table ((?:[^":]|"(?:[^"]|"")*")*):') END AS head
    FROM pg_logical_slot_get_changes($1, NULL, NULL, 'skip-empty-xacts', '1')
    WHERE data LIKE 'table %'
) AS changed GROUP BY head"#;

/// A row of [`CHANGES`].
pub(crate) type Row = (String, i64, Vec<i64>);

/// A table that committed transactions changed.
#[derive(Debug, PartialEq)]
pub(crate) struct Changed {
    /// As Postgres quotes it: `public."User"`.
    pub table: String,
    /// The position of its last change in the log: the same for every instance that decodes it.
    pub lsn: i64,
    /// The transactions (32-bit ids, as the decoder gives them) that changed it.
    pub xids: Vec<u32>,
}

/// Each table of the rows of [`CHANGES`] once.
pub(crate) fn changes(rows: &[Row]) -> Vec<Changed> {
    let mut changes: Vec<Changed> = Vec::new();
    for (head, lsn, xids) in rows {
        // `xid` is 32 bits; it came through `xid::text::int8`.
        let xids = xids.iter().map(|xid| *xid as u32);
        for table in changed_tables(&format!("table {head}:")).unwrap_or_default() {
            match changes.iter_mut().find(|known| known.table == table) {
                Some(known) => {
                    known.lsn = known.lsn.max(*lsn);
                    for xid in xids.clone() {
                        if !known.xids.contains(&xid) {
                            known.xids.push(xid);
                        }
                    }
                }
                None => {
                    changes.push(Changed { table: table.to_owned(), lsn: *lsn, xids: xids.clone().collect() })
                }
            }
        }
    }
    changes
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
    use super::{Changed, changes, visible};

    #[test]
    fn each_table_once_with_its_last_change_and_transactions() {
        let row = |head: &str, lsn: i64, xids: &[i64]| (head.to_owned(), lsn, xids.to_vec());
        let rows = vec![
            row("public.\"User\"", 13, &[7]),
            row("public.bx", 20, &[7, 9]),
            row("public.\"user\", public.\"a, b: c\"", 13, &[7]),
            row("app.\"x\"\"y\"", 16, &[8]),
            row("public.\"a, b: c\"", 21, &[10, 7]),
        ];
        let changed = |table: &str, lsn: i64, xids: &[u32]| Changed {
            table: table.to_owned(),
            lsn,
            xids: xids.to_vec(),
        };
        assert_eq!(
            changes(&rows),
            [
                changed("public.\"User\"", 13, &[7]),
                changed("public.bx", 20, &[7, 9]),
                changed("public.\"user\"", 13, &[7]),
                changed("public.\"a, b: c\"", 21, &[7, 10]),
                changed("app.\"x\"\"y\"", 16, &[8]),
            ]
        );
        assert_eq!(changes(&[]), [], "nothing committed");
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
