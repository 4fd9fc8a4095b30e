"""The checks and what the grader knows about them (issue 21: ``mistakes``; the lead moves the checks here)."""
