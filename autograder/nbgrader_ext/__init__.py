"""What nbgrader runs of ours: the preprocessors named in nbgrader_config.py, nbgrader's commands in the grading
process, the feedback exporter and page template, the cell sanitiser, and what autograde left ungraded."""
