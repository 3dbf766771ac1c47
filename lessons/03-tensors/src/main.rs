//! Lesson 03-tensors: being written.

fn main() {}
