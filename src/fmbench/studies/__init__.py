"""Studies beyond the main comparison: `data_size` (accuracy against training-set size) and
`robustness` (accuracy under corruptions). Each writes a JSON result and its own report; the main
report adds their sections when `compare` is given a study's directory."""
