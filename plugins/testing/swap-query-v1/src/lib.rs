//! Test plugin: version 1 of the query handler named `swap-query` (see
//! `swap_query.rs`). Tests swap it with `test-swap-query-v2` under load.

mod swap_query;

/// Put in every answer this code gives.
const CODE: &str = "v1";

tessera_sdk::query_handler!(
    swap_query::SwapQuery,
    name = "swap-query",
    version = "1.0.0"
);
