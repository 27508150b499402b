// `crate = "..."` makes the generated code use the given path to the runtime crate.
//
// trybuild cannot rename a dependency (`cq = { package = "cached-query" }`), so `::cached_query`
// still resolves here: this case proves that `crate = "cq_renamed"` is accepted and that the
// generated code compiles through that path (an `extern crate` alias, as a renamed dependency
// would be), both for the function and its `_invalidate`, and with a path to a re-export.
extern crate cached_query as cq_renamed;

#[cq_renamed::cached_query(crate = "cq_renamed", ttl = 60)]
async fn by_alias(id: i64) -> Result<i64, String> {
    Ok(id)
}

// A re-export of the runtime inside the user's crate (as a facade crate would do).
mod facade {
    pub use ::cached_query as runtime;
}

#[cq_renamed::cached_query(crate = "crate::facade::runtime", ttl = 60)]
async fn by_reexport(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {
    let _ = (by_alias(1), by_alias_invalidate(1));
    let _ = (by_reexport(1), by_reexport_invalidate(1));
}
