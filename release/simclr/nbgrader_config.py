"""nbgrader settings for students, read by `nbgrader validate simclr_lab.ipynb` run in this folder."""
c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

# Validate runs every cell of the notebook. nbgrader stops a cell after 30 s by default, which the training
# cells can exceed on a slow laptop; 10 minutes per cell, as the course's own configuration allows.
c.Execute.timeout = 600
