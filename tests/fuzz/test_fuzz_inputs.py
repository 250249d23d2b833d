"""Generated bad input for what users type: search spaces and configs, layout strings,
profiles and ``start_cluster`` keywords.

Each property runs at least 1,000 generated cases and asserts that nothing fails but
with the project's own clear error (``SpaceError``, ``LayoutError``, ``ConfigError``),
that no case hangs (a 20 s alarm per case, far above any case's cost), that an error
names the field and the rule, and that what a start accepts reaches a job script only
checked or quoted. The cluster property exercises :func:`kale_ext.clusters.check_start`,
which ``start_cluster`` runs before anything starts (shown in
``tests/clusters/test_config.py``); no cluster is started here. Each test prints how many
cases it ran.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shlex
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dask.config
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_ext._errors import BackendNotFound, ConfigError, LayoutError, SpaceError
from kale_ext.clusters import _dask_jobs, _ipp_launchers, check_start
from kale_ext.models._shapes import plan
from kale_ext.search import Space
from kale_ext.search._domains import Choice
from kale_ext.search._ranges import Integer, Uniform
from tests.models.test_layout import GOOD_TOKENS
from tests.search.test_space import malformed, spaces

CASES = 1000
FUZZ = settings(max_examples=CASES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
HANG = 20  # seconds: a case still running after this is hung, not slow

# Text a hostile or careless user might type into any field.
HOSTILE = st.sampled_from([
    "", " ", "60; id", "$(id)", "`id`", "a\nb", "x\r\n#SBATCH --uid=0", "a b", "'q'", '"q"',
    "\x00", "|id", "&& rm -rf ~", "../../etc", "${HOME}", "*", "0.0.0.0", "nan", "inf", "-1",
    "1e999", "0", "\u00e9\u00df", "a" * 300,
])
WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    HOSTILE, st.text(max_size=12), st.lists(st.one_of(HOSTILE, st.integers()), max_size=3),
    st.dictionaries(st.one_of(HOSTILE, st.integers()), st.one_of(HOSTILE, st.integers()),
                    max_size=2),
)


@contextlib.contextmanager
def bounded(seconds: int = HANG) -> Iterator[None]:
    """Fail a case that runs longer than ``seconds`` (a hang), without timing it."""
    def hung(*_: Any) -> None:
        raise AssertionError(f"a case ran past {seconds} s: hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _report(name: str, counts: Counter[str]) -> None:
    total = sum(counts.values())
    print(f"\nfuzz {name}: {total} cases, " + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(counts.items())))
    assert total >= CASES


def _shown(value: Any) -> list[str]:
    """Ways an error may name ``value``: itself, its text, or one of its items."""
    out = [repr(value), repr(str(value)), str(value)]
    if isinstance(value, list | tuple):
        for item in value:
            out += _shown(item)
    if isinstance(value, dict):
        for key, item in value.items():
            out += _shown(key) + _shown(item)
    return out


# Words that state a rule ("must be", "is not", "expected", "neither ... nor", ...).
RULE = re.compile(r"must|expect|not|no |neither|only|need|cannot|would|unknown|known|exceed|"
                  r"spans|write|use |outside|between|at least|at most|give|takes|but got|"
                  r"is a |has ", re.IGNORECASE)


# -- search spaces and configs ------------------------------------------------------------
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(),
              st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=12,
)
stored_domains = st.fixed_dictionaries({
    "type": st.sampled_from(["uniform", "loguniform", "int", "choice", "grid", "normal", "",
                             None, 3]),
}, optional={"low": json_like, "high": json_like, "step": json_like, "log": json_like,
             "options": json_like})


def _stored_space() -> st.SearchStrategy[Any]:
    """A space's stored (JSON) form, as a store or a REST body carries it, mangled."""
    leaf = st.one_of(stored_domains, json_like)
    node = st.dictionaries(st.text(max_size=5), leaf, max_size=4)
    return st.one_of(node, json_like,
                     st.fixed_dictionaries({"__kale_space__": st.just(1)}).flatmap(
                         lambda base: st.dictionaries(st.text(max_size=4), leaf, max_size=3)
                         .map(lambda d: {**base, **d})))


def _mangled(draw: st.DrawFn, data: Any) -> Any:
    """``data`` (JSON) with one field replaced or removed, or unchanged."""
    places: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for key, value in items:
            places.append((node, key))
            walk(value)

    walk(data)
    what = draw(st.sampled_from(["keep", "replace", "remove"]))
    if what == "keep" or not places:
        return data
    node, key = draw(st.sampled_from(places))
    if what == "remove" and isinstance(node, dict):
        del node[key]
    else:
        node[key] = draw(json_like)
    return data


def _pick(draw: st.DrawFn, node: Any) -> Any:
    """A config of the space node ``node``: a value drawn within each domain."""
    out = {}
    for key, spec in node.items():
        if isinstance(spec, Choice):
            option = draw(st.sampled_from(spec.options))
            out[key] = _pick(draw, option) if isinstance(option, dict) else copy.deepcopy(option)
        elif isinstance(spec, Integer):
            value = draw(st.integers(spec.low, spec.high))
            out[key] = spec.low + (value - spec.low) // spec.step * spec.step
        elif isinstance(spec, Uniform):
            out[key] = draw(st.floats(spec.low, spec.high))
        elif isinstance(spec, dict):
            out[key] = _pick(draw, spec)
        else:
            out[key] = copy.deepcopy(spec)
    return out


def _config_for(draw: st.DrawFn, space: Space) -> Any:
    """A config: one the space suggested, then perhaps mangled."""
    config = _pick(draw, space.spec)
    assert space.validate_config(config) == config  # a value of each domain is accepted
    flat = Space.flatten(config)
    if flat and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(flat)))
        flat[key] = draw(json_like)
    if draw(st.booleans()):
        flat[draw(st.text(max_size=4))] = draw(json_like)
    if flat and draw(st.booleans()):
        flat.pop(draw(st.sampled_from(sorted(flat))))
    if draw(st.integers(0, 4)) == 0:
        return draw(json_like)
    return Space.unflatten(flat)


def test_fuzz_search_spaces_and_configs() -> None:
    counts: Counter[str] = Counter()

    @FUZZ
    @given(st.data())
    def case(data: st.DataObject) -> None:
        how = data.draw(st.sampled_from(["built", "malformed", "stored", "edited"]))
        with bounded():
            try:
                if how == "built":
                    space = Space(data.draw(spaces()))
                elif how == "malformed":
                    space = Space(data.draw(malformed()))
                elif how == "stored":
                    space = Space.from_dict(data.draw(_stored_space()))
                else:  # a stored space, one of its fields changed (or none)
                    space = Space.from_dict(_mangled(data.draw, Space(
                        data.draw(spaces())).to_dict()))
            except SpaceError as e:
                assert RULE.search(str(e)) and ("'" in str(e) or "space" in str(e)), str(e)
                counts[f"{how} space refused"] += 1
                return
            assert how != "malformed"
            assert Space.from_dict(json.loads(json.dumps(space.to_dict()))) == space
            config = _config_for(data.draw, space)
            try:
                checked = space.validate_config(config)
            except SpaceError as e:
                assert RULE.search(str(e)) or "config" in str(e), str(e)
                counts[f"{how} space, config refused"] += 1
                return
            assert space.validate_config(checked) == checked
            assert json.loads(json.dumps(checked)) == checked
            counts[f"{how} space, config accepted"] += 1

    case()
    _report("search spaces and configs", counts)


# -- layout strings -------------------------------------------------------------------------
LAYER_WORDS = ["DENSE", "CONV", "DECONV", "MAXPOOL", "RESHAPE", "FLAT", "PADDING2D",
               "UPSAMPLE", "BNORM", "DROPOUT", "RNN", "LSTM", "GRU", "RELU", "TANH", "LINEAR",
               "LEAKYRELU", "ELU", "SOFTMAX", "N", "(N+1)*2", "dense", "Layout="]
FIELDS = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(
    ["0", "1", "2", "0.5", "1e9", "99999999999", "nan", "-0", "+3", "N", "N*N*N*N", "(N",
     "", " ", "FLAT", "RELU", "1_000", "2**64", "__import__('os')", "N/0"]))
TOKENS = st.builds(lambda name, fields: "|".join([name, *fields]),
                   st.sampled_from(LAYER_WORDS), st.lists(FIELDS, max_size=9))
PLAUSIBLE = st.lists(GOOD_TOKENS, min_size=1, max_size=5).map(",".join)
LAYOUTS = st.one_of(
    PLAUSIBLE, PLAUSIBLE,
    st.tuples(PLAUSIBLE, st.integers(0, 60), st.sampled_from(list("|,#{}=()N0 -.x9"))).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),  # one character slipped in
    st.lists(TOKENS, min_size=0, max_size=6).map(",".join),
    st.tuples(st.lists(TOKENS, min_size=1, max_size=3), st.lists(TOKENS, min_size=1,
                                                                  max_size=3)).map(
        lambda p: f"Encoder={{{','.join(p[0])}}}Decoder={{{','.join(p[1])}}}"),
    st.tuples(st.lists(TOKENS, min_size=1, max_size=3), st.lists(TOKENS, min_size=1,
                                                                  max_size=3)).map(
        lambda p: ",".join(p[0]) + "##" + ",".join(p[1])),
    st.text(alphabet="DENSECONV|,{}=#()N0123456789 .-+*", max_size=40),
    st.text(max_size=30),
    st.builds(lambda body: f"!H:V:Layout={body}:TrainingStrategy=x", st.lists(
        TOKENS, min_size=1, max_size=3).map(",".join)),
)
SHAPES = st.one_of(
    st.sampled_from([(1, 8, 8), (3, 5, 7), (6, 4), (10,)]),
    st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
    st.sampled_from([(), (0,), (-1, 3), (1.5,), ("a",), (1, 2, 3, 4), "1|28|28", "x|y",
                     (2**40, 2**40, 2**40), None]),
)


def test_fuzz_layout_strings() -> None:
    counts: Counter[str] = Counter()

    @FUZZ
    @given(LAYOUTS, SHAPES, st.one_of(st.none(), st.integers(-1, 12)))
    def case(layout: str, shape: Any, outputs: int | None) -> None:
        with bounded():
            try:
                result = plan(layout, shape, outputs=outputs)
            except LayoutError as e:
                text = str(e)
                assert e.rule or RULE.search(text), text
                if e.token:  # a token's error says which and where
                    assert repr(e.token) in text and f"offset {e.offset}" in text, text
                counts["refused"] += 1
                return
        for layers in result.parts.values():
            assert all(d >= 1 for lp in layers for d in lp.out_shape), layout
        counts["accepted"] += 1

    case()
    _report("layout strings", counts)


# -- profiles and start_cluster keywords --------------------------------------------------
KEYS = ["cores", "processes", "memory", "walltime", "queue", "account", "qos", "constraint",
        "gpus_per_worker", "job_extra", "prologue", "interface", "worker_options",
        "job_name", "local_directory", "death_timeout", "resource_spec", "lifetime_margin",
        "tls", "interface_host", "dashboard_address", "idle_timeout", "pin",
        "threads_per_worker", "engines_per_job", "start_timeout", "nonsense_key"]
# Plausible values, so that starts are also accepted and their scripts read.
GOOD = {
    "cores": st.integers(1, 8), "processes": st.just(1), "memory": st.sampled_from(
        ["1GiB", "500MB", 2**30]), "walltime": st.sampled_from(["00:30:00", "01:00:00", "90"]),
    "queue": st.sampled_from(["debug", "gpu"]), "account": st.just("m1234"),
    "job_extra": st.just(["--exclusive"]), "prologue": st.just(["module load python"]),
    "death_timeout": st.sampled_from([60, "2 minutes", 1.5]), "tls": st.sampled_from(
        [True, "off-i-know"]), "idle_timeout": st.sampled_from(["1h", 0, 600]),
    "pin": st.booleans(), "lifetime_margin": st.sampled_from([60, "5m"]),
    "worker_options": st.just({"resources": "GPU=1; id"}),
    "local_directory": st.just("/tmp/a b;$(id)"), "threads_per_worker": st.integers(1, 4),
    "dashboard_address": st.just(":0"),
}
KINDS = st.sampled_from(["local", "slurm", "pbs", "sge", "lsf", "slurm-dev", "nosuch", None])
BACKENDS = st.sampled_from([None, "dask", "dask", "ipyparallel", "nosuch"])


@st.composite
def keywords(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=5, unique=True)):
        good = GOOD.get(key)
        out[key] = draw(good) if good is not None and draw(st.booleans()) else draw(WEIRD)
    return out


# Quoted words, read left to right: '...' and "..." without expansions ("'" quotes a ').
_QUOTED = re.compile(r"'[^']*'" + r'|"[^"$`\\]*"')
# What jobqueue itself quotes in a directive: LSF's -R "span[hosts=1]".
_PLAIN_QUOTED = re.compile(r'"[A-Za-z0-9_\[\]=.:, -]*"')
_SHELL = set(";|&$`<>(){}\\\"'\n\r\x00")


def _directive_is_plain(line: str) -> None:
    """A directive (after its prefix, ``#SBATCH``, ``#$``) holds no quote, expansion or break."""
    body = _PLAIN_QUOTED.sub("", line.split(" ", 1)[1] if " " in line else "")
    assert not set(body) & (_SHELL - set("&|()")), line


def _script_is_safe(script: str, prologue: list[str]) -> None:
    """Every line is a directive of safe text, the user's prologue, or a quoted command."""
    for line in script.splitlines():
        if line in prologue or not line.strip() or line.startswith("#!"):
            continue
        if line.startswith("#"):
            _directive_is_plain(line)
            continue
        if line.startswith("export "):
            continue
        unquoted = _QUOTED.sub("", line)
        assert not set(unquoted) & _SHELL, line
        shlex.split(line)


def _named(err: Exception, options: dict[str, Any]) -> None:
    """The error names a field (or the profile/kind/backend) and says the rule."""
    text = str(err)
    assert RULE.search(text), text
    fields = [*options, "kind", "backend", "profile", "workers", "walltime", "memory",
              "cores", "processes", "interface_host", "state directory"]
    assert any(f in text for f in fields), text


def _accepted(backend: str, kind: str, options: dict[str, Any]) -> None:
    if kind == "local":
        return
    prologue = [str(p) for p in (options.get("prologue") or [])]
    if backend == "dask":
        _script_is_safe(_dask_jobs.job_script(kind, options), prologue)
    else:
        traits = _ipp_launchers.launcher_traits(kind, options)
        for line in traits["kale_directives"]:
            _directive_is_plain(line)


def _start_case(kind: Any, backend: Any, options: dict[str, Any], counts: Counter[str],
                label: str, *, fields: tuple[str, ...] = (), **extra: Any) -> None:
    with bounded():
        try:
            name, resolved_kind, resolved = check_start(kind, backend=backend, **extra,
                                                        **options)
        except (ConfigError, BackendNotFound) as e:
            _named(e, {**options, **dict.fromkeys(fields)})
            counts[f"{label} refused"] += 1
            return
        _accepted(name, resolved_kind, resolved)
    counts[f"{label} accepted"] += 1


def test_fuzz_start_cluster_keywords() -> None:
    counts: Counter[str] = Counter()

    @FUZZ
    @given(KINDS, BACKENDS, keywords(), st.one_of(st.none(), st.integers(-2, 3), WEIRD))
    def case(kind: Any, backend: Any, options: dict[str, Any], workers: Any) -> None:
        _start_case(kind, backend, options, counts, "keywords", workers=workers)

    case()
    _report("start_cluster keywords", counts)


def test_fuzz_profiles() -> None:
    counts: Counter[str] = Counter()

    @FUZZ
    @given(KINDS, keywords(), st.one_of(st.none(), WEIRD), BACKENDS,
           st.dictionaries(st.sampled_from(KEYS), WEIRD, max_size=2))
    def case(kind: Any, section: dict[str, Any], profile_kind: Any, backend: Any,
             over: dict[str, Any]) -> None:
        # A profile as a site writes it (dashed keys), started with or without keywords.
        profile = {key.replace("_", "-"): value for key, value in section.items()}
        if profile_kind is not None:
            profile["kind"] = profile_kind
        if backend is not None:
            profile["backend"] = backend
        with dask.config.set({"kale.profiles.fuzzed": profile}):
            _start_case(kind, None, over, counts, "profile", profile="fuzzed",
                        fields=tuple(section))

    case()
    _report("profiles", counts)


def test_the_fuzzed_starts_cover_both_answers() -> None:
    # The strategies are not all-bad: a plausible batch start is accepted and its script read.
    counts: Counter[str] = Counter()
    _start_case("slurm", "dask", {"death_timeout": "2 minutes", "local_directory": "/a b;$(x)"},
                counts, "example")
    _start_case("slurm", "dask", {"death_timeout": "60; id"}, counts, "example")
    assert counts == {"example accepted": 1, "example refused": 1}


@pytest.mark.parametrize("value", ["60; id", "$(id)", "1\n2"])
def test_a_hostile_value_is_named_with_its_rule(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_start("slurm", death_timeout=value)
    assert repr(value) in str(err.value) and "seconds" in str(err.value)
