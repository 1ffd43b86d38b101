//! slipway-router
