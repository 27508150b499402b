// Tag templates name parameters of the function; a lone brace, or one not closed, is an error.
// So is the receiver, which is not part of the key.
use cached_query::cached_query;

#[cached_query(tags = ["user:{nope}", "a}b", "user:{id"])]
async fn user(id: i64) -> i64 {
    id
}

#[cached_query(tags = ["all:{x}"])]
async fn all() -> i64 {
    1
}

struct Tenant {
    tenant: i64,
}

impl Tenant {
    #[cached_query(tags = ["tenant:{self.tenant}"])]
    async fn count(&self) -> i64 {
        self.tenant
    }
}

fn main() {}
