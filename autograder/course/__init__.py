"""The course's plumbing around the checks: finding and prechecking submissions, grading jobs on a local pool or a
Dask cluster, the gradebook's URL, example submissions and answer variants, nbgrader's command line."""
