"""The instructor's grader. The commands live here (``python -m autograder.grade``, ``.demo``, ``.release``,
``.calibrate``); their parts live in the subpackages ``boundary``, ``checks``, ``course`` and ``nbgrader_ext``."""
