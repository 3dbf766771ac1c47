//! Lesson 02-random: being written.

fn main() {}
