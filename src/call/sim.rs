//! Virtual-time call simulator (tests only).
