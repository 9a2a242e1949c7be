//! RED metrics (placeholder, filled below).
