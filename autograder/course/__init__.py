"""The course's side of grading: what an instructor runs and reads around a batch."""
