"""The part of Triton's ``triton_python_backend_utils`` a generated model.py uses, for the tests.

The real module is built into Triton's python backend stub (a C++ extension inside the
tritonserver container); no package on PyPI ships it, so the tests run the exported model.py
with this stand-in of the same names and semantics (python_backend's README, "Usage"):
``Tensor(name, ndarray)`` with ``name()`` and ``as_numpy()``, ``get_input_tensor_by_name``
returning None for an optional input the request leaves out, ``InferenceResponse(
output_tensors=[...], error=None)``, ``TritonError(message)``.
"""

from __future__ import annotations

from typing import Any


class TritonError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> Any:
        return self._array


class InferenceRequest:
    """What Triton hands ``execute``: named input tensors (built by the test)."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        self.inputs = [Tensor(name, array) for name, array in inputs.items()]


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self._outputs = output_tensors
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)
