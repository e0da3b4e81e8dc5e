//! How the core is driven: by Lambda events, or by the one-process local server.

#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
