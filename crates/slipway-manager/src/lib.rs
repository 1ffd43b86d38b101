//! slipway-manager
