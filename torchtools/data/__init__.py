"""Data loading: numeric tables, images through OpenCV, and in-memory batching on the device."""
