//! slipway-build
