"""The sandbox and the process boundary: student code runs only in worker processes inside bubblewrap and a cgroup;
the grader talks to them through checked plain replies and verifies its own files were not changed."""
