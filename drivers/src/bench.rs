//! `weft bench`: runtime figures as `name value unit` lines (placeholder until the bench lands).

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub fn bench(_a: BenchArgs) -> i32 {
    0
}
