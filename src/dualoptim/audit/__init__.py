"""The audit of a deletion request, shared by every task: statistics, thresholds, hashes, reports.

- :mod:`~dualoptim.audit.stats`: membership-inference AUC with a bootstrap interval, the KS test.
- :mod:`~dualoptim.audit.requirements`: ``--require`` thresholds and the verdict of each criterion.
- :mod:`~dualoptim.audit.hashing`: SHA-256 of files, folders and forget lists.
- :mod:`~dualoptim.audit.outputs`: files and folders written atomically.
- :mod:`~dualoptim.audit.record`: the audit itself, ``audit.json``, ``audit.md`` and its plots.

A task (``vision.deletion``, ``llm.deletion``) measures its sets before and after unlearning; the
audit is the same for every task. This package imports no task.
"""

from dualoptim.audit.hashing import sha256_file, sha256_ids, sha256_path
from dualoptim.audit.outputs import atomic_file, atomic_folder
from dualoptim.audit.record import SETS, SetScores, build_audit, exit_status, render_markdown, write_audit
from dualoptim.audit.requirements import CRITERIA, Requirement, parse_requirements
from dualoptim.audit.stats import auc, membership_auc, two_sample_ks

__all__ = [
    "CRITERIA",
    "SETS",
    "Requirement",
    "SetScores",
    "atomic_file",
    "atomic_folder",
    "auc",
    "build_audit",
    "exit_status",
    "membership_auc",
    "parse_requirements",
    "render_markdown",
    "sha256_file",
    "sha256_ids",
    "sha256_path",
    "two_sample_ks",
    "write_audit",
]
