//! The client's README, whose Rust snippets run as this crate's doctests (`cargo test -p
//! bedrock-pool-readme --doc`), with the dependencies the README's Usage section lists.
#![doc = include_str!("../../README.md")]
