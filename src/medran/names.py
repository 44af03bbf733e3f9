"""The names every layer agrees on, in one torch-free module.

``params`` validates against these, the registries (``medran.tasks.TASKS``,
``medran.methods.METHODS``, ``medran.models.finetune.HEADS``) are keyed by them, and
``tests/pipeline/test_dvc_consistency.py`` checks ``dvc.yaml`` and ``params.yaml`` against
them. Adding a task, method or head starts here.
"""

from __future__ import annotations

TASKS = ("cls", "vqa")
METHODS = ("lp", "mlp", "nmtune", "ran", "advft", "fare", "tecoa")
HEADS = ("linear", "mlp")
# The robust evaluation's attacks (``medran.evaluation.protocol``) and the preset every other
# preset is calibrated against (the field's standard: docs/study.md, "Robust protocol").
ATTACKS = ("apgd-ce", "apgd-t", "pgd")
FULL_PRESET = "full"
# The data-quality gates of ``validate_data@<gate>``, in pipeline order; each noise level has
# its own gate, ``validate_noisy@<level>``. What each reads is in ``docs/architecture.md``.
GATES = ("clean", "adversarial", "nesting")
NOISY_GATE = "noisy"
# The dataset roles ``prepare_data`` reads, and the kind of data each needs.
ROLE_KIND = {"upstream": "captions", "targets": "captions", "cls": "labels", "vqa": "vqa"}
ROLES = tuple(ROLE_KIND)
