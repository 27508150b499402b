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
/// position of its last change, and a last row with the ids of the transactions that committed.
/// Grouped there, a busy table costs one row per read, not one per changed row. (A name without
/// a `"` anywhere in its row ends at the first `:`; otherwise the pattern reads quotes.)
pub(crate) const CHANGES: &str = r#"WITH changes AS (
    SELECT lsn, xid, data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'skip-empty-xacts', '1')
)
SELECT head, (max(lsn) - '0/0'::pg_lsn)::int8, NULL::int8[] FROM (
    SELECT lsn, CASE WHEN strpos(data, '"') = 0 THEN split_part(substr(data, 7), ':', 1)
                     ELSE substring(data FROM '^table ((?:[^":]|"(?:[^"]|"")*")*):') END AS head
    FROM changes WHERE data LIKE 'table %'
) AS changed GROUP BY head
UNION ALL
SELECT NULL, NULL, array_agg(xid::text::int8) FROM changes WHERE data LIKE 'COMMIT%'"#;

/// A row of [`CHANGES`].
pub(crate) type Row = (Option<String>, Option<i64>, Option<Vec<i64>>);

/// The committed changes of one read of a slot.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changes {
    /// Each changed table (as Postgres quotes it: `public."User"`) once, with the position of
    /// its last change in the log: the same for every instance that decodes it.
    pub tables: Vec<(String, i64)>,
    /// The transactions (32-bit ids, as the decoder gives them) that committed.
    pub xids: Vec<u32>,
}

/// [`Changes`] from the rows of [`CHANGES`].
pub(crate) fn changes(rows: &[Row]) -> Changes {
    let mut changes = Changes::default();
    for (head, lsn, xids) in rows {
        if let (Some(head), Some(lsn)) = (head, lsn) {
            for table in changed_tables(&format!("table {head}:")).unwrap_or_default() {
                match changes.tables.iter_mut().find(|(known, _)| known == table) {
                    Some((_, last)) => *last = (*last).max(*lsn),
                    None => changes.tables.push((table.to_owned(), *lsn)),
                }
            }
        }
        // `xid` is 32 bits; it came through `xid::text::int8`.
        changes.xids.extend(xids.iter().flatten().map(|xid| *xid as u32));
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
    use super::{Changes, changes, visible};

    #[test]
    fn each_table_once_with_its_last_change() {
        let table = |head: &str, lsn: i64| (Some(head.to_owned()), Some(lsn), None);
        let rows = vec![
            table("public.\"User\"", 13),
            table("public.bx", 20),
            table("public.\"user\", public.\"a, b: c\"", 13),
            table("app.\"x\"\"y\"", 16),
            table("public.\"a, b: c\"", 21),
            (None, None, Some(vec![7, 9, 8, 10])),
        ];
        let owned =
            |pairs: &[(&str, i64)]| pairs.iter().map(|(t, l)| ((*t).to_owned(), *l)).collect::<Vec<_>>();
        assert_eq!(
            changes(&rows),
            Changes {
                tables: owned(&[
                    ("public.\"User\"", 13),
                    ("public.bx", 20),
                    ("public.\"user\"", 13),
                    ("public.\"a, b: c\"", 21),
                    ("app.\"x\"\"y\"", 16),
                ]),
                xids: vec![7, 9, 8, 10],
            }
        );
        assert_eq!(changes(&[(None, None, None)]), Changes::default(), "nothing committed");
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
