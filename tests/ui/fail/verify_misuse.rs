// `verify` is a share of hits in [0, 1], and needs a body that can run in the background.
use cached_query::cached_query;

#[cached_query(verify = 2)]
async fn too_much(id: i64) -> i64 {
    id
}

#[cached_query(verify = "often")]
async fn not_a_number(id: i64) -> i64 {
    id
}

#[cached_query(verify, skip(conn))]
async fn borrows(conn: &mut Vec<i64>, id: i64) -> i64 {
    conn.push(id);
    id
}

fn main() {}
