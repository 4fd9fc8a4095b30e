"""Checks that grade the students' components against the reference and the properties they must have."""
