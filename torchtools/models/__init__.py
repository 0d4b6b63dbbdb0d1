"""Model definitions, one module per family (the course's networks and their stronger variants)."""
