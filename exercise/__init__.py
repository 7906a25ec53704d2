"""Student starting point for the BatchNorm exercise."""
