"""`python -m pipeline ...`: the same command line as `otjr` (used by dvc.yaml)."""

from stages import main

main()
