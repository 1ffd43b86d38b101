//! cgroup driver (v1, hybrid, v2). Being written.
