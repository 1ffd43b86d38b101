//! slipway-cli
