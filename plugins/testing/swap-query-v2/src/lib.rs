//! Test plugin: version 2 of the query handler named `swap-query`; the same source as
//! `test-swap-query-v1` (`swap-query-v1/src/swap_query.rs`) with another [`CODE`].

#[path = "../../swap-query-v1/src/swap_query.rs"]
mod swap_query;

/// Put in every answer this code gives.
const CODE: &str = "v2";

tessera_sdk::query_handler!(
    swap_query::SwapQuery,
    name = "swap-query",
    version = "2.0.0"
);
