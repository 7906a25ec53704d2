"""Reference implementation of the BatchNorm exercise (instructor-only)."""
