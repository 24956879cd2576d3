//! Your desk. `cargo lab start 03` copies lesson 03's leaking program here, as
//! `src/bin/03-close-wait-student.rs`, a real cargo target of its own (rust-analyzer knows it).
//! Edit that copy until `cargo lab check 03` passes; `cargo lab reset 03` gives you a fresh
//! copy and keeps yours beside it as a backup.
//!
//! The copies are yours and are not committed (see `.gitignore`). The shipped lessons in
//! `exercises/src/bin/` stay as they are: they are the book's source and the tests' fixtures.
