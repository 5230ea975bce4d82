"""One module per experiment: its config, data wiring and model building, called by the thin entry scripts."""
