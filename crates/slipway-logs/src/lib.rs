//! slipway-logs
