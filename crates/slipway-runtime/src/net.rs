//! Dyno networking (bridge, netns pool, nftables). Being written.
