"""The Triton python backend's ``model.py`` for transformers models, and the I/O it declares.

A version whose ``config.json`` has a ``model_type`` is a transformers model: the export writes
``<N>/model.py`` (the source in ``MODEL_PY``) that loads ``<N>/weights`` with transformers (and
``<N>/adapter`` with peft, merged), and declares its tensors in config.pbtxt:

- inputs ``input_ids`` (INT64, ``[-1, -1]``) and ``attention_mask`` (INT64, ``[-1, -1]``,
  optional: all ones), token ids from the model's tokenizer;
- output ``last_hidden_state`` (FP32, ``[-1, -1, -1]``; task ``feature-extraction``,
  ``AutoModel``) or ``logits`` (FP32, ``[-1, -1]``; task ``text-classification``,
  ``AutoModelForSequenceClassification``, chosen when ``architectures`` names a
  ``…ForSequenceClassification``).

Triton's python environment needs numpy, torch and transformers (and peft for an adapter arm).
For anything else (no ``config.json``, another kind of model) no model.py is written and the
export warns, naming ``--python-model FILE`` and the backends that fit (the files and the
config are still exported, for a model.py of your own); ``--python-model FILE`` always wins.
"""

from __future__ import annotations

from typing import Any

TASKS = {
    "feature-extraction": ("AutoModel", "last_hidden_state", [-1, -1, -1]),
    "text-classification": ("AutoModelForSequenceClassification", "logits", [-1, -1]),
}


def not_transformers(label: str) -> str:
    """The warning for a version mvc writes no model.py for."""
    return (
        f"{label} is not a transformers model (no config.json with model_type), so mvc wrote "
        "no model.py for Triton's python backend: pass --python-model FILE (your model.py), or "
        "export with --backend onnxruntime / pytorch for those formats"
    )


def task_of(config: dict[str, Any] | None) -> str | None:
    """The task the generated model.py serves for a version with this ``config.json`` (None:
    not a transformers model)."""
    if not config or not isinstance(config.get("model_type"), str):
        return None
    architectures = config.get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "text-classification"
    return "feature-extraction"


def io_config(task: str) -> list[str]:
    """config.pbtxt lines declaring the inputs and the output of ``task``."""
    _cls, output, dims = TASKS[task]
    shape = ", ".join(map(str, dims))
    return [
        'input [ { name: "input_ids" data_type: TYPE_INT64 dims: [-1, -1] },',
        '        { name: "attention_mask" data_type: TYPE_INT64 dims: [-1, -1] optional: true } ]',
        f'output [ {{ name: "{output}" data_type: TYPE_FP32 dims: [{shape}] }} ]',
    ]


MODEL_PY = '''\
"""Triton python backend model written by `mvc export --format triton` (mvc.exports.triton_python).

Loads <version>/weights with transformers (and <version>/adapter with peft, merged) and answers
input_ids (+ optional attention_mask) with the output config.pbtxt declares. The task is the
"mvc.task" parameter of config.pbtxt. Needs numpy, torch and transformers (peft for adapters).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

CLASSES = {"feature-extraction": "AutoModel", "text-classification": "AutoModelForSequenceClassification"}
OUTPUTS = {"feature-extraction": "last_hidden_state", "text-classification": "logits"}


class TritonPythonModel:
    def initialize(self, args):
        import torch
        import transformers

        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.task = parameters.get("mvc.task", "feature-extraction")
        folder = os.path.join(args["model_repository"], args["model_version"])
        model = getattr(transformers, CLASSES[self.task]).from_pretrained(os.path.join(folder, "weights"))
        adapter = os.path.join(folder, "adapter")
        if os.path.isdir(adapter):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.eval()
        self.output = OUTPUTS[self.task]
        self.torch = torch

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
                mask = pb_utils.get_input_tensor_by_name(request, "attention_mask")
                mask = np.ones_like(ids) if mask is None else mask.as_numpy()
                with self.torch.no_grad():
                    out = self.model(
                        input_ids=self.torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
                        attention_mask=self.torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
                    )
                value = getattr(out, self.output).float().numpy()
                tensor = pb_utils.Tensor(self.output, value)
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            except Exception as exc:  # one bad request must not fail the others
                error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self):
        self.model = None
'''
