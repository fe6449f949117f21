"""Use cases over a Repo. They return result values and never print or exit."""
