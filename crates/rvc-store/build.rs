//! The migrations are embedded by `refinery::embed_migrations!`: rebuild when one changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
