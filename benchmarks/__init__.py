"""Load and stampede benchmarks, run by hand; results go to docs/benchmarks.md."""
