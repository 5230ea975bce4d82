"""Studies: the sweep runner and its summary, plots, model reports (spike rates, costs) and rank advice."""
