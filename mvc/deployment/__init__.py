"""Deployment as pure values, no I/O anywhere in this package:

- ``records``: deployment records, the states their arms form, their canonical encoding and
  checked decoder, and what ``bert@prod[:LABEL]`` names (``serving_arm``, ``arm_rev``);
- ``names``: what a model's tags say about its versions (a name for people, deprecation);
- ``planners``: the rollout state machine, one pure planner per move.

The use cases in ``mvc.ops.deploy`` load records and store the planned ones. Import the
submodules: this package imports nothing, so depending on one part never pulls in the others.
"""
