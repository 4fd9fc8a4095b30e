"""What is graded: which check grades which test cell, the hidden checks of the five components, the NT-Xent
checks, the graded training run, and one submission's grading."""
