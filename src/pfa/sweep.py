"""`python -m pfa.sweep STUDY.yaml`: run a study's grid of training runs, then write its report (`pfa.study.sweep`)."""

from pfa.study.sweep import main

if __name__ == "__main__":
    main()
