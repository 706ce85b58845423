// The matrix products go through OpenBLAS's CBLAS interface (Debian: libopenblas-dev, installed by
// scripts/setup.sh). See BENCHMARKS.md for why OpenBLAS rather than a pure-Rust GEMM.
fn main() {
    println!("cargo:rustc-link-lib=openblas");
    println!("cargo:rerun-if-changed=build.rs");
}
