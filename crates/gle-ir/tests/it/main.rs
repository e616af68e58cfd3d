//! Integration tests of parsing plus checking: the bundled models, the invalid-input corpus, and
//! property tests that no input can panic the front end.

mod corpus;
mod math;
mod models;
mod props;
mod suggest;
