//! TODO(issue 12): see vehicle/mod.rs.
