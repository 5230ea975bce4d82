"""`python -m pfa.plots`: draw a run's curves or a study's charts again (`pfa.study.plots`)."""

from pfa.study.plots import main

if __name__ == "__main__":
    main()
