//! `tables = auto`: the tables a function's SQL reads (`#[cached_query]`) or writes
//! (`#[cache_invalidate]`), found at compile time. The SQL is taken from the string literals the
//! body passes to sqlx (`query`, `query_as`, `query_scalar` and their `_with` forms, also with a
//! turbofish, or a `let` binding of a literal passed on; the `query!` family; `query_file!`
//! reads its file as sqlx does) and parsed with `sqlparser` in the executor's dialect.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use proc_macro2::Span;
use sqlparser::ast::{
    FromTable, ObjectName, ObjectNamePart, Query, Statement, TableFactor, TableObject, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use syn::punctuated::Punctuated;
use syn::visit::Visit as SynVisit;
use syn::{Expr, ExprLit, Lit, LitStr, Pat, Signature, Token};

use crate::attr::Tables;

/// The sqlx functions whose first argument is the SQL.
const QUERY_FNS: &[&str] =
    &["query", "query_as", "query_scalar", "query_with", "query_as_with", "query_scalar_with"];
/// The sqlx macros that take the SQL as a literal (the first string literal among their
/// arguments: `query_as!(Row, "...")`).
const QUERY_MACROS: &[&str] =
    &["query", "query_as", "query_scalar", "query_unchecked", "query_as_unchecked", "query_scalar_unchecked"];
/// The sqlx macros that read the SQL from a file, relative to the crate's root.
const QUERY_FILE_MACROS: &[&str] = &[
    "query_file",
    "query_file_as",
    "query_file_scalar",
    "query_file_unchecked",
    "query_file_as_unchecked",
    "query_file_scalar_unchecked",
];

/// One SQL text of the body, with where it came from.
pub struct Sql {
    pub text: String,
    pub span: Span,
}

/// The SQL dialect, from the executor parameters' types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    MySql,
    Sqlite,
    Generic,
}

impl Flavor {
    /// The dialect of the executor types in `sig` (`PgPool`, `&mut MySqlConnection`,
    /// `impl SqliteExecutor<'_>`, `Pool<Postgres>`, ...); generic when it names none.
    pub fn of(sig: &Signature) -> Flavor {
        let types = sig
            .inputs
            .iter()
            .map(|input| quote::ToTokens::to_token_stream(input).to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if types.contains("Pg") || types.contains("Postgres") {
            Flavor::Postgres
        } else if types.contains("MySql") {
            Flavor::MySql
        } else if types.contains("Sqlite") {
            Flavor::Sqlite
        } else {
            Flavor::Generic
        }
    }

    fn dialect(self) -> Box<dyn Dialect> {
        match self {
            Flavor::Postgres => Box::new(PostgreSqlDialect {}),
            Flavor::MySql => Box::new(MySqlDialect {}),
            Flavor::Sqlite => Box::new(SQLiteDialect {}),
            Flavor::Generic => Box::new(GenericDialect {}),
        }
    }
}

/// The SQL texts the body hands to sqlx, in order.
pub fn find_sql(block: &syn::Block) -> syn::Result<Vec<Sql>> {
    let mut finder = Finder { literals: BTreeMap::new(), found: Vec::new(), error: None };
    finder.visit_block(block);
    match finder.error {
        Some(err) => Err(err),
        None => Ok(finder.found),
    }
}

struct Finder {
    /// `let name = "literal";` bindings seen so far.
    literals: BTreeMap<String, LitStr>,
    found: Vec<Sql>,
    error: Option<syn::Error>,
}

impl Finder {
    fn literal(&self, expr: &Expr) -> Option<LitStr> {
        match expr {
            Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Some(lit.clone()),
            Expr::Path(path) => {
                path.path.get_ident().and_then(|ident| self.literals.get(&ident.to_string()).cloned())
            }
            Expr::Reference(reference) => self.literal(&reference.expr),
            Expr::Paren(paren) => self.literal(&paren.expr),
            _ => None,
        }
    }
}

impl<'ast> SynVisit<'ast> for Finder {
    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let (Pat::Ident(pat), Some(init)) = (&local.pat, &local.init)
            && let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = &*init.expr
        {
            self.literals.insert(pat.ident.to_string(), lit.clone());
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let Expr::Path(func) = &*call.func
            && let Some(last) = func.path.segments.last()
            && QUERY_FNS.contains(&last.ident.to_string().as_str())
            && let Some(sql) = call.args.first().and_then(|arg| self.literal(arg))
        {
            self.found.push(Sql { text: sql.value(), span: sql.span() });
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let Some(name) = mac.path.segments.last().map(|s| s.ident.to_string()) else { return };
        let file = QUERY_FILE_MACROS.contains(&name.as_str());
        if !file && !QUERY_MACROS.contains(&name.as_str()) {
            return;
        }
        let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) else { return };
        let Some(lit) = args.iter().find_map(|arg| match arg {
            Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Some(lit.clone()),
            _ => None,
        }) else {
            return;
        };
        if !file {
            self.found.push(Sql { text: lit.value(), span: lit.span() });
            return;
        }
        let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let path = std::path::Path::new(&root).join(lit.value());
        match std::fs::read_to_string(&path) {
            Ok(text) => self.found.push(Sql { text, span: lit.span() }),
            Err(err) => {
                let message = format!("`tables = auto` could not read `{}`: {err}", path.display());
                self.error.get_or_insert(syn::Error::new(lit.span(), message));
            }
        }
    }
}

/// The tables of an attribute's `tables = ...`, normalised and sorted: read from the body's SQL
/// (`auto`, for `access`) or listed. Errors point at `auto`, at the SQL literal that does not
/// parse, or at the listed name.
pub fn resolve(
    tables: &Tables,
    block: &syn::Block,
    sig: &Signature,
    access: Access,
) -> syn::Result<Vec<String>> {
    let auto = match tables {
        Tables::Listed(names) => {
            return names
                .iter()
                .map(|name| {
                    normalise_listed(&name.value()).ok_or_else(|| {
                        syn::Error::new_spanned(name, "not a table name: `table` or `schema.table`")
                    })
                })
                .collect::<syn::Result<BTreeSet<_>>>()
                .map(|set| set.into_iter().collect());
        }
        Tables::Auto(auto) => auto,
    };
    let sql = find_sql(block)?;
    if sql.is_empty() {
        return Err(syn::Error::new_spanned(
            auto,
            "`tables = auto` found no SQL string literal in the body (`sqlx::query(\"...\")`, \
             `query_as::<_, T>(\"...\")`, `query!(\"...\")`, a `let` of a literal passed on, \
             `query_file!`); list the tables instead: `tables = [\"users\", ...]`",
        ));
    }
    let flavor = Flavor::of(sig);
    let mut found = BTreeSet::new();
    for Sql { text, span } in &sql {
        let tables = self::tables(text, flavor, access).map_err(|err| {
            syn::Error::new(
                *span,
                format!(
                    "`tables = auto` cannot parse this SQL ({flavor:?} dialect): {err}; \
                     list the tables instead: `tables = [\"users\", ...]`"
                ),
            )
        })?;
        found.extend(tables);
    }
    if found.is_empty() && access == Access::Written {
        return Err(syn::Error::new_spanned(
            auto,
            "`tables = auto` found no table that this SQL writes (INSERT, UPDATE, DELETE, MERGE, \
             TRUNCATE); list the tables instead: `tables = [\"users\", ...]`",
        ));
    }
    Ok(found.into_iter().collect())
}

/// A listed name (`users`, `app."Users"`), normalised as the SQL's are; `None` if empty.
fn normalise_listed(name: &str) -> Option<String> {
    let parts: Vec<String> = name
        .split('.')
        .map(|part| match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => canonical(quoted),
            None => part.trim().to_lowercase(),
        })
        .collect();
    parts.iter().all(|part| !part.is_empty()).then(|| parts.join("."))
}

/// Which tables to collect from a statement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every table the statement reads: `FROM`, joins, subqueries anywhere, CTE bodies (not the
    /// CTE names), set operations; not table-valued functions.
    Read,
    /// The tables it writes: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, also in a CTE.
    Written,
}

/// The tables `sql` reads or writes, normalised (see [`normalise`]), sorted.
pub fn tables(sql: &str, flavor: Flavor, access: Access) -> Result<BTreeSet<String>, String> {
    let statements =
        sqlparser::parser::Parser::parse_sql(&*flavor.dialect(), sql).map_err(|e| e.to_string())?;
    let mut collector = Collector { access, ctes: BTreeSet::new(), tables: BTreeSet::new() };
    let _ = statements.visit(&mut collector);
    let ctes = collector.ctes;
    Ok(collector.tables.into_iter().filter(|table| !ctes.contains(table)).collect())
}

struct Collector {
    access: Access,
    /// The names the statement's `WITH` clauses define.
    ctes: BTreeSet<String>,
    tables: BTreeSet<String>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(normalise_ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if self.access == Access::Read
            && let TableFactor::Table { name, args: None, .. } = factor
        {
            self.tables.insert(normalise(name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if self.access == Access::Read {
            return ControlFlow::Continue(());
        }
        let mut write = |factor: &TableFactor| {
            if let TableFactor::Table { name, .. } = factor {
                self.tables.insert(normalise(name));
            }
        };
        match statement {
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &insert.table {
                    self.tables.insert(normalise(name));
                }
            }
            Statement::Update(update) => write(&update.table.relation),
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
                if delete.tables.is_empty() {
                    from.iter().for_each(|table| write(&table.relation));
                }
                self.tables.extend(delete.tables.iter().map(normalise));
            }
            Statement::Merge(merge) => write(&merge.table),
            Statement::Truncate(truncate) => {
                self.tables.extend(truncate.table_names.iter().map(|target| normalise(&target.name)));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// A table's name as the cache knows it: an unquoted part folded to lower case (as Postgres
/// folds it), a quoted one kept as written, and quoted (`"Users"`) only if it has upper case
/// letters; parts joined with `.`. The runtime normalises names the same way.
pub fn normalise(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalise_ident(ident),
            ObjectNamePart::Function(function) => normalise_ident(&function.name),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn normalise_ident(ident: &sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => canonical(&ident.value),
        None => ident.value.to_lowercase(),
    }
}

fn canonical(value: &str) -> String {
    if value.chars().any(char::is_uppercase) { format!("\"{value}\"") } else { value.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> Vec<String> {
        tables(sql, Flavor::Postgres, Access::Read).unwrap().into_iter().collect()
    }

    fn written(sql: &str, flavor: Flavor) -> Vec<String> {
        tables(sql, flavor, Access::Written).unwrap().into_iter().collect()
    }

    #[test]
    fn reads_of_real_queries() {
        let cases: &[(&str, &[&str])] = &[
            ("SELECT id, name FROM users WHERE id = $1", &["users"]),
            (
                "SELECT u.id, u.name FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.team_id = $1",
                &["memberships", "users"],
            ),
            ("SELECT * FROM a LEFT JOIN b USING (id) CROSS JOIN c", &["a", "b", "c"]),
            (
                "SELECT * FROM orders WHERE user_id IN (SELECT id FROM users WHERE banned)",
                &["orders", "users"],
            ),
            (
                "SELECT * FROM posts p WHERE EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.id)",
                &["likes", "posts"],
            ),
            (
                "SELECT (SELECT count(*) FROM comments c WHERE c.post_id = p.id) FROM posts p",
                &["comments", "posts"],
            ),
            (
                "WITH recent AS (SELECT * FROM events WHERE at > now() - interval '1 day') \
                 SELECT * FROM recent JOIN users ON users.id = recent.user_id",
                &["events", "users"],
            ),
            ("SELECT id FROM a UNION SELECT id FROM b EXCEPT SELECT id FROM c", &["a", "b", "c"]),
            ("SELECT * FROM generate_series(1, 10) g JOIN items ON items.id = g", &["items"]),
            ("SELECT x FROM unnest($1::int[]) AS x", &[]),
            ("SELECT id, rank() OVER (PARTITION BY team ORDER BY score DESC) FROM players", &["players"]),
            ("SELECT * FROM \"User\" JOIN Public.Orders ON true", &["\"User\"", "public.orders"]),
            ("SELECT * FROM app.\"Accounts\" JOIN \"lower\" ON true", &["app.\"Accounts\"", "lower"]),
            ("SELECT * FROM user_view", &["user_view"]),
        ];
        for (sql, expected) in cases {
            assert_eq!(read(sql), *expected, "{sql}");
        }
    }

    #[test]
    fn writes_of_real_statements() {
        let pg: &[(&str, &[&str])] = &[
            ("INSERT INTO users (name) VALUES ($1) RETURNING id", &["users"]),
            ("INSERT INTO tags (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", &["tags"]),
            (
                "UPDATE users SET name = $2 FROM teams WHERE teams.id = users.team_id AND users.id = $1",
                &["users"],
            ),
            ("DELETE FROM sessions WHERE expires < now()", &["sessions"]),
            ("TRUNCATE audit_log, \"Events\"", &["\"Events\"", "audit_log"]),
            (
                "WITH moved AS (DELETE FROM inbox WHERE id = $1 RETURNING *) INSERT INTO archive SELECT * FROM moved",
                &["archive", "inbox"],
            ),
            (
                "MERGE INTO stock s USING deliveries d ON s.item = d.item \
                 WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty",
                &["stock"],
            ),
            ("SELECT * FROM users", &[]),
        ];
        for (sql, expected) in pg {
            assert_eq!(written(sql, Flavor::Postgres), *expected, "{sql}");
        }
        assert_eq!(written("UPDATE `Orders` SET paid = 1 WHERE id = ?", Flavor::MySql), ["\"Orders\""]);
        assert_eq!(written("DELETE FROM orders WHERE id = ?", Flavor::Sqlite), ["orders"]);
    }

    #[test]
    fn listed_names_are_normalised_as_the_sql_is() {
        assert_eq!(normalise_listed("Users").unwrap(), "users");
        assert_eq!(normalise_listed("App.\"Users\"").unwrap(), "app.\"Users\"");
        assert!(normalise_listed("").is_none() && normalise_listed("a.").is_none());
    }

    #[test]
    fn placeholders_of_each_dialect_parse() {
        assert_eq!(
            tables("SELECT * FROM t WHERE a = ? AND b = ?", Flavor::MySql, Access::Read).unwrap().len(),
            1
        );
        assert_eq!(tables("SELECT * FROM t WHERE a = ?1", Flavor::Sqlite, Access::Read).unwrap().len(), 1);
        assert!(tables("SELEC * FROM", Flavor::Postgres, Access::Read).is_err());
    }

    #[test]
    fn the_sql_of_a_body_is_found() {
        let block: syn::Block = syn::parse_quote!({
            let sql = "SELECT * FROM a";
            let one = sqlx::query(sql).fetch_one(pool).await?;
            let two = sqlx::query_as::<_, Row>(r#"SELECT * FROM b"#).fetch_all(pool).await?;
            let three = query_scalar("SELECT count(*) FROM c").fetch_one(pool).await?;
            let four = sqlx::query_as!(Row, "SELECT * FROM d WHERE id = $1", id).fetch_one(pool).await?;
            let skipped = sqlx::query(&format!("SELECT * FROM {table}"));
        });
        let found: Vec<String> = find_sql(&block).unwrap().into_iter().map(|sql| sql.text).collect();
        assert_eq!(
            found,
            ["SELECT * FROM a", "SELECT * FROM b", "SELECT count(*) FROM c", "SELECT * FROM d WHERE id = $1"]
        );
    }
}
