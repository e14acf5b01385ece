"""Infrastructure shared by every part of the pipeline: errors, registries, paths, atomic I/O."""
