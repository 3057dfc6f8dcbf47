"""What a discovery method is: a frozen entry pairing a scoring function with its options dataclass.

Each method module (``eap``, ``eap_ig``, ``eap_ig_activations``, ``exact``, …) defines one frozen
options dataclass, whose field defaults are the method's only defaults, and one
:class:`DiscoveryMethod` entry; :mod:`circuitwise.circuits.methods` collects the entries. Every
scoring function has the same signature::

    score(model, tok, options, *, batch_size, metric, progress, check) -> EdgeScores

Options are checked when they are built (:meth:`DiscoveryMethod.options`): an option the method
does not have, or a value it cannot take, is a :class:`~circuitwise.errors.ConfigError` that names
what is valid, before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, Mapping, TypeVar, get_args

from circuitwise.errors import ConfigError

O = TypeVar("O")

#: Keyword arguments every scoring function takes besides its options.
COMMON = ("batch_size", "metric", "progress", "check")

#: Where EAP takes its one gradient: the clean run (noising; EAP-IG, MIB, auto-circuit) or the
#: corrupted run (denoising; TransformerLens's ``attribution_patch``).
Gradient = Literal["clean", "corrupted"]

#: The integration points of integrated gradients along the path from the corrupted (α = 0) to the
#: clean (α = 1) value: ``right`` α = k/n, k = 1…n (ends at the clean run); ``left`` α = k/n,
#: k = 0…n−1 (starts at the corrupted run); ``midpoint`` α = (k + ½)/n; ``trapezoid`` α = k/n,
#: k = 0…n, end points weighted ½ (n + 1 gradients).
Quadrature = Literal["right", "left", "midpoint", "trapezoid"]


@dataclass(frozen=True)
class DiscoveryMethod(Generic[O]):
    """One registered method: its name, the scoring function and its options dataclass.

    ``nodes`` scores nodes (senders) directly where that is cheaper than scoring every edge (exact
    patching: one forward per sender instead of per edge); without it, a node's score is the sum of
    its outgoing edges' scores, which for gradient methods is exactly the node's own attribution.
    """

    name: str
    description: str
    options_type: type[O]
    score: Callable[..., Any]
    nodes: Callable[..., Any] | None = None
    # Why the method cannot score a model (said before any work), beyond what every engine checks; None: it can.
    supports: Callable[[Any], str | None] | None = None
    # What the method refuses for these prompts with these options (positions the prompts cannot line up,
    # score buffers over the memory budget): raises, and the runner calls it before any stage runs.
    check_prompts: Callable[[Any, Any, Any], None] | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options_type))  # type: ignore[arg-type]

    def options(self, given: O | Mapping[str, Any] | None = None, **overrides: Any) -> O:
        """The method's options: defaults, updated from ``given`` (a mapping or an options object)
        and ``overrides``; an unknown option is an error naming the valid ones."""
        if isinstance(given, self.options_type):
            base = given
        elif given is not None and not isinstance(given, Mapping):
            raise ConfigError(f"Options of method {self.name!r} must be a {self.options_type.__name__} "
                              f"or a mapping, not {type(given).__name__}.")
        else:
            base = None
        values = {**({} if base is not None or given is None else dict(given)), **overrides}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(self.option_names))
        if unknown:
            valid = ", ".join(self.option_names) or "none"
            raise ConfigError(
                f"Method {self.name!r} has no option {unknown[0]!r}; its options are: {valid} "
                f"(plus {', '.join(COMMON[:2])}). See the README's 'Edge-score conventions'."
            )
        if base is not None:
            return dataclasses.replace(base, **values)  # type: ignore[type-var]
        return self.options_type(**values)

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options_type())  # type: ignore[call-overload]


def check_choice(method: str, option: str, value: Any, kind: Any) -> None:
    """Raise unless ``value`` is one of the ``Literal`` ``kind``'s values."""
    allowed = get_args(kind)
    if value not in allowed:
        raise ConfigError(f"{method}: {option} must be one of {', '.join(map(str, allowed))}, got {value!r}.")


def check_steps(method: str, steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{method} needs a positive whole number of steps, got {steps!r} (5 to 20 is usual).")


def options_config(options: Any) -> dict[str, Any]:
    """An options dataclass as the plain dict recorded in scores' ``config`` (and circuit.json)."""
    return dataclasses.asdict(options)


__all__ = ["COMMON", "DiscoveryMethod", "Gradient", "Quadrature", "check_choice", "check_steps", "options_config"]
