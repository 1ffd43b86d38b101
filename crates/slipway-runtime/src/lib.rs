//! slipway-runtime
