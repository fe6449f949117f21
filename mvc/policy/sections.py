"""Every section the policy file (``mvc.yaml``) may have, in the order docs/policy.md
describes them: the one list ``policy.file`` parses a file against. To add a section, write
its parser in its own module under ``mvc/policy/`` and list it here.

A module of its own so that the parsers load only when a policy file is parsed: a project
without one (and every checkout's deprecation check in it) never loads gates, SLOs or archive
rules."""

from __future__ import annotations

from typing import Any

from mvc.policy.archive import ARCHIVE, RETENTION
from mvc.policy.deprecations import DEPRECATIONS
from mvc.policy.desired import CHANNELS
from mvc.policy.gates import GATES
from mvc.policy.requires import REQUIRES
from mvc.policy.signing import SIGNING
from mvc.policy.slo import SLO
from mvc.policy.sources import SOURCES
from mvc.policy.text import Section

SECTIONS: tuple[Section[Any], ...] = (
    SLO,
    SOURCES,
    GATES,
    DEPRECATIONS,
    ARCHIVE,
    RETENTION,
    CHANNELS,
    REQUIRES,
    SIGNING,
)
