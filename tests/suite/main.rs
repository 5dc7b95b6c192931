//! The integration tests, as one test binary: every dependency is linked once instead of once
//! per file (a clean `make test` builds this, the library's unit tests and the binary).
mod common;

mod cli_errors;
mod cluster;
mod e2e;
mod faults;
mod layers;
mod onnx;
mod own_data;
