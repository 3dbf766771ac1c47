//! Lesson 01-matmul: being written.

fn main() {}
