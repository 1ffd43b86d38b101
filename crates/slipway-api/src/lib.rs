//! slipway-api
