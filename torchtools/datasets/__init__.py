"""The course's two small datasets, shipped with the package (see README.md here for their origin)."""
