"""`--evaltypes`: which model output is evaluated, and weighted combinations of several.

A plain evaltype names one output of the model's dict: `discriminative` is the embedding (`embeds`),
`avg_features` the pooled backbone features. `Combined_<a>_<b>-<wa>-<wb>` (any number of parts, one weight
each; the reference's help text promised it, REFERENCE.md §6 item 7) evaluates

    z = normalise([wa * normalise(a), wb * normalise(b)])

so that its cosine similarity is the wa^2/wb^2-weighted mean of the parts' cosine similarities. Differs from
DiVA's version, which weighted the raw outputs: their scales differ by orders of magnitude (a unit-norm
embedding next to 2048 pooled ReLU features), which made the weights meaningless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from metrics import as_numpy
from utilities.errors import UsageError
from utilities.registry import Registry

#: evaltype -> key of the model's output dict.
EVALTYPES: Registry = Registry("evaltype", "--evaltypes")
EVALTYPES.register("discriminative")("embeds")
EVALTYPES.register("avg_features")("avg_features")

COMBINED = "Combined_"


@dataclass(frozen=True)
class Evaltype:
    name: str
    parts: Tuple[str, ...]
    weights: Tuple[float, ...] = ()

    @property
    def output_keys(self) -> Tuple[str, ...]:
        return tuple(EVALTYPES[p] for p in self.parts)


def _split_parts(text: str, n: int) -> Optional[List[str]]:
    """Split 'a_b_c' into n registered evaltypes (names may contain '_'); None when impossible."""
    if n == 1:
        return [text] if text in EVALTYPES else None
    for i, char in enumerate(text):
        if char == "_" and text[:i] in EVALTYPES:
            rest = _split_parts(text[i + 1:], n - 1)
            if rest is not None:
                return [text[:i], *rest]
    return None


def parse(name: str) -> Evaltype:
    if not name.startswith(COMBINED):
        EVALTYPES.lookup(name)
        return Evaltype(name, (name,))
    usage = (f"--evaltypes: cannot read '{name}'; write Combined_<a>_<b>-<wa>-<wb> with a, b from "
             f"{', '.join(sorted(EVALTYPES))} and non-negative weights, e.g. Combined_discriminative_avg_features-1-0.5")
    types, *weight_texts = name[len(COMBINED):].split("-")
    try:
        weights = tuple(float(w) for w in weight_texts)
    except ValueError:
        raise UsageError(usage) from None
    parts = _split_parts(types, len(weights)) if len(weights) >= 2 else None
    if parts is None or any(w < 0 for w in weights) or not any(weights):
        raise UsageError(usage)
    return Evaltype(name, tuple(parts), weights)


def check(names: Iterable[str]) -> None:
    for name in names:
        parse(name)


def output_keys(names: Sequence[str]) -> List[str]:
    """The model outputs that the evaltypes read, each once."""
    return list(dict.fromkeys(key for name in names for key in parse(name).output_keys))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def features(names: Sequence[str], outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """{evaltype: N x D features} from the model's outputs {output key: N x D}. A plain evaltype passes its
    output through as it is (array or tensor); a combination is computed on the host in float64."""
    result = {}
    for name in names:
        evaltype = parse(name)
        if not evaltype.weights:
            result[name] = outputs[evaltype.output_keys[0]]
            continue
        parts = [w * _normalise(as_numpy(outputs[key]).astype(np.float64))
                 for w, key in zip(evaltype.weights, evaltype.output_keys)]
        result[name] = _normalise(np.concatenate(parts, axis=1)).astype(np.float32)
    return result
