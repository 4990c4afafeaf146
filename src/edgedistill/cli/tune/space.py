"""What `edgedistill tune` searches: the method, each method's own settings, and dimensions every recipe draws.

The tables are data. Adding a method to the search is one METHOD_SPACES entry (a method without one is still
searched, at its defaults); a knob every recipe may turn is one RECIPE_SPACE entry, like the mix: mixup or CutMix of
each batch (distill.mix), which a mixed trial's teacher computes live, since the cache holds unmixed views. Which methods can run at all is read from the registry's `needs` (methods.METHODS), never
from method names here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import optuna

from edgedistill.config.distill import takes_mixed_rows
from edgedistill.distill import METHODS, Offer


@dataclass(frozen=True)
class Dim:
    """One searched setting: a dotted config key and the values it may take (a float range, or choices)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    fits: Callable[[str], bool] | None = None  # the methods that may draw it; every method when None

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        return float(f"{trial.suggest_float(name, self.low, self.high, log=self.log):.3g}")  # as a recipe reads

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


# Ranges around each paper's published settings (the defaults in config/distill.py sit inside them).
METHOD_SPACES: dict[str, tuple[Dim, ...]] = {
    "kd": (Dim("distill.temperature", 1.0, 8.0, log=True), Dim("distill.alpha", 0.1, 1.0)),
    "dkd": (Dim("distill.temperature", 1.0, 8.0, log=True), Dim("distill.dkd.alpha", 0.5, 2.0),
            Dim("distill.dkd.beta", 0.5, 8.0, log=True)),
    "dist": (Dim("distill.dist.temperature", 1.0, 8.0, log=True), Dim("distill.dist.beta", 0.5, 4.0, log=True),
             Dim("distill.dist.gamma", 0.5, 4.0, log=True)),
    "nkd": (Dim("distill.nkd.temperature", 1.0, 8.0, log=True), Dim("distill.nkd.gamma", 0.5, 4.0, log=True)),
    "mvkd": (Dim("distill.temperature", 1.0, 8.0, log=True), Dim("distill.alpha", 0.1, 1.0)),
    "fitnets": (Dim("distill.fitnets.weight", 0.1, 100.0, log=True),),
    "at": (Dim("distill.at.weight", 10.0, 3000.0, log=True),),
    "reviewkd": (Dim("distill.reviewkd.weight", 0.2, 5.0, log=True),),
    "crd": (Dim("distill.crd.weight", 0.2, 2.0, log=True),),
}
# drawn by the methods the registry marks `standardize` (Sun et al., CVPR 2024)
STANDARDIZE = Dim("distill.logit_standardization", choices=(False, True))
# drawn by every trial whose method `fits` it
MIX = Dim("distill.mix.kind", choices=("none", "mixup", "cutmix"), fits=takes_mixed_rows)
RECIPE_SPACE: tuple[Dim, ...] = (MIX,)


def mixes_allowed(token_ids: bool, flat: bool) -> tuple[str, ...]:
    """The mixes the data allows: token ids cannot be blended, and flat features have no box for CutMix."""
    return ("none",) if token_ids else tuple(m for m in MIX.choices if not (flat and m == "cutmix"))


def recipe_space(token_ids: bool, flat: bool, mixes: tuple[str, ...] | None = None) -> tuple[Dim, ...]:
    """RECIPE_SPACE as the data allows, the mix drawn from `mixes` (every one allowed when None)."""
    allowed = mixes or mixes_allowed(token_ids, flat)
    return tuple(replace(d, choices=allowed) if d is MIX else d for d in RECIPE_SPACE
                 if not (d is MIX and allowed == ("none",)))


@dataclass(frozen=True)
class SearchSpace:
    """The methods this study searches (those that fit the teacher and data), and why the others were left out."""

    methods: tuple[str, ...]
    excluded: dict[str, str]
    recipe: tuple[Dim, ...] | None = None  # RECIPE_SPACE as this data allows (recipe_space); all of it when None

    def recipe_dims(self, method: str) -> tuple[Dim, ...]:
        dims = RECIPE_SPACE if self.recipe is None else self.recipe
        return tuple(d for d in dims if d.fits is None or d.fits(method))

    def dims(self, method: str) -> tuple[Dim, ...]:
        own = METHOD_SPACES.get(method, ())
        return own + ((STANDARDIZE,) if METHODS[method].standardize else ()) + self.recipe_dims(method)

    def describe(self) -> dict[str, dict[str, str]]:
        """Per method, each searched key and its range: stored with the study, so workers can be compared."""
        return {m: {d.key: d.describe() for d in self.dims(m)} for m in self.methods}

    def param_name(self, method: str, dim: Dim) -> str:
        """A dimension's name in the study: shared recipe dimensions by key, a method's own under its name."""
        return dim.key if dim in self.recipe_dims(method) else f"{method}/{dim.key}"

    def config_params(self, base: dict, method: str) -> dict[str, Any]:
        """The study's params for the recipe the config itself gives `method` (its defaults unless the config sets
        them); a setting outside the searched range is left to the sampler."""
        params: dict[str, Any] = {"method": method}
        for d in self.dims(method):
            value = _get(base, d.key)
            if d.choices and value in d.choices:
                params[self.param_name(method, d)] = value
            elif not d.choices and isinstance(value, (int, float)) and d.low <= value <= d.high:
                params[self.param_name(method, d)] = float(f"{value:.3g}")
        return params

    def sample(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        """The trial's method and settings (a retried trial gets back the ones it had)."""
        method = trial.suggest_categorical("method", list(self.methods))
        return method, {d.key: d.suggest(trial, self.param_name(method, d)) for d in self.dims(method)}


def recipe_config(base: dict, method: str, settings: dict[str, Any]) -> dict:
    """The experiment config of one recipe: the base config with the method and its settings put in. A mixed
    recipe runs its teacher live: the cache holds the teacher's outputs on unmixed views only."""
    cfg = _copy(base)
    cfg["distill"]["method"] = method if METHODS[method].kind == "logit" else [method]
    if not METHODS[method].standardize:
        cfg["distill"]["logit_standardization"] = False
    for key, value in settings.items():
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    if cfg["distill"].get("mix", {}).get("kind", "none") != "none":
        cfg["distill"].setdefault("cache", {})["enabled"] = False
    return cfg


def _get(d: dict, key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _copy(d: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def space_difference(stored: dict[str, dict[str, str]], mine: dict[str, dict[str, str]]) -> str | None:
    """The first way two searched spaces differ, in words; None when they are the same."""
    if list(stored) != list(mine):
        return f"it searches methods {', '.join(stored)}; this command {', '.join(mine)}"
    for method in mine:
        for key in sorted(set(stored[method]) | set(mine[method])):
            theirs, ours = stored[method].get(key, "nothing"), mine[method].get(key, "nothing")
            if theirs != ours:
                return f"{method}'s {key}: it searches {theirs}; this command {ours}"
    return None


def eligible(names: list[str], unmet: Callable[[str], str | None], offer: Offer) -> SearchSpace:
    """The methods whose every need the run meets and that do not refuse what it offers; `unmet(need)` says why a
    need is not met, or None."""
    methods, excluded = [], {}
    for name in names:
        why = next((w for w in (unmet(need) for need in sorted(METHODS[name].needs)) if w), None)
        why = why or METHODS[name].refuse(offer)
        if why:
            excluded[name] = why
        else:
            methods.append(name)
    return SearchSpace(tuple(methods), excluded)
