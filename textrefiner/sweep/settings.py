"""A sweep's settings: from a YAML file, then command-line flags on top; and the job grid they define.

Every key (all optional):

    protocol: base2new            # base2new | xd | few_shot
    host: coop                    # textrefiner/protocols/hosts.py
    trainers: [CoOp, CoOp_TextRefiner]   # default: all of the host's
    cfg: vit_b16_ep10_ctxv1       # trainer config name; default: the host's for the protocol
    datasets: [caltech101, dtd]   # xd: the targets; default: the paper's datasets (the source's targets)
    source: testbed_shapes        # xd only: the dataset the model is trained on (default: imagenet)
    seeds: [1, 2, 3]
    shots: [16]                   # few_shot default: [1, 2, 4, 8, 16]
    data: data                    # dataset root (default: $DATA or ./data)
    output: output                # output root (default: $OUTPUT or ./output)
    opts: {OPTIM.MAX_EPOCH: 2}    # train.py KEY VALUE overrides (a mapping or a flat list)
    tag: ep2                      # run tag: these settings get their own folder, <cfg>/<tag>/seed<S>
    variants:                     # an ablation: each variant = a name and config overrides (on top of
      no_tr: {TRAINER.TEXTREFINER.ENABLED: false}   # opts), run as its own setting: its name is its run
      m10: {TRAINER.TEXTREFINER.CACHE_SIZE: 10}     # tag (folder <cfg>/<name>/seed<S>, a table row);
      release: {}                 # {}: the config's own settings, in a folder of their own
    overwrite: false              # true: replace runs made with other settings (deletes their folders)
    shared: false                 # true: the CoOp/CoOp_TextRefiner/ZeroshotCLIP runs (trainers, variants) of
                                  # a (dataset, shots, seed) run in one process, the frozen image tower
                                  # computed once for all (sweep/shared.py); sets TRAIN.SEEDED_DATA_STREAM True
    executor: local               # local | submitit-local | slurm
    gpus: [0, 1]                  # local: one job per listed GPU at a time
    parallel: 2                   # local without gpus: this many jobs (shared: groups) at once on the CPU (each
                                  # gets cores/parallel threads unless OMP_NUM_THREADS is set)
    slurm: {slurm_partition: gpu, timeout_min: 600}   # submitit AutoExecutor parameters
    log_dir: output/sweep_logs    # per-job logs and sweep_report.json (default: <output>/sweep_logs)
    compare: [CoOp, CoOp_TextRefiner]   # the final table: A and B side by side, with B-A; default
                                  # with two trainers: the baseline as A, its TextRefiner variant as B
                                  # (none with variants: their table has a Variant column instead)

The whole file is checked before anything runs (``UserError``, one line naming the key): an
unknown key, a value of the wrong type, an empty list or mapping (leave the key out for its
default), a list naming one item twice. A variant's name must be a run tag (a safe folder name);
it may not also set ``tag``, nor override a key the protocol sets (``DATASET.NUM_SHOTS``, ...), a
key ``opts`` already sets (which value would win?) or a path or the seed (``NOT_SETTINGS``: it
would move or mix runs). ``opts`` and every variant's config are then checked against the
project's config by ``preflight.check_configs``.
"""
import difflib
import os
import os.path as osp
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Optional

import yaml

from ..errors import UserError
from ..protocols import DEFAULT_DATASETS, DEFAULT_SHOTS, HOSTS, PROTOCOLS, Job, Setup, get_host
from ..protocols.steps import check_opts, check_tag
from ..results.benchmarks import SEEDS, XD_SOURCE, XD_TARGET_GROUPS, paper_order
from ..results.record import NOT_SETTINGS
from .executors import EXECUTORS

#: what shared runs add to every run's overrides: the batches depend on the seed only, so that the
#: variants trained together see what each sees alone (an alone run with it reproduces the shared one)
SHARED_OPTS = ("TRAIN.SEEDED_DATA_STREAM", "True")


@dataclass
class SweepSettings:
    protocol: str = "base2new"
    host: str = "coop"
    trainers: Optional[List[str]] = None
    cfg: Optional[str] = None
    datasets: Optional[List[str]] = None
    source: Optional[str] = None
    seeds: List[int] = field(default_factory=lambda: list(SEEDS))
    shots: Optional[List[int]] = None
    data: str = field(default_factory=lambda: os.environ.get("DATA") or "data")
    output: str = field(default_factory=lambda: os.environ.get("OUTPUT") or "output")
    opts: List[str] = field(default_factory=list)
    tag: str = ""
    #: variant name (its run tag) -> its flat KEY VALUE overrides, applied after ``opts``
    variants: Dict[str, List[str]] = field(default_factory=dict)
    overwrite: bool = False
    #: run the variants of a (dataset, shots, seed) that can share the frozen image tower in one process
    shared: bool = False
    executor: str = "local"
    gpus: List[str] = field(default_factory=list)
    parallel: int = 1
    slurm: Dict[str, Any] = field(default_factory=dict)
    log_dir: Optional[str] = None
    compare: Optional[List[str]] = None

    def update(self, values: Dict[str, Any], source: str) -> "SweepSettings":
        """Set the given keys after checking each one's type (``UserError`` naming the key, the type
        expected and ``source``). None values are ignored for flags (not given) and refused in a
        file (``datasets:`` with nothing after it would silently mean the default)."""
        known = [f.name for f in fields(self)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UserError(f"{source}: unknown sweep key {key!r}{hint}; the keys are {', '.join(known)} "
                                f"(textrefiner/sweep/settings.py)")
        for key, value in values.items():
            if value is None and source != "command line":
                raise UserError(f"{source}: {key} has no value: give one, or leave the key out for the default")
            if value is not None:
                setattr(self, key, _checked(key, value, source))
        return self

    def resolve(self) -> "SweepSettings":
        """Fill the defaults that depend on the protocol and host; check the choices."""
        if self.protocol not in PROTOCOLS:
            raise UserError(f"protocol must be one of {sorted(PROTOCOLS)}, got {self.protocol!r}")
        if self.executor not in EXECUTORS:
            raise UserError(f"executor must be one of {sorted(EXECUTORS)}, got {self.executor!r}")
        if self.gpus and self.executor != "local":
            raise UserError("gpus is for the local executor; on SLURM ask for GPUs with slurm: {gpus_per_node: 1}")
        if self.shared and (self.executor != "local" or len(self.gpus) > 1):
            raise UserError("shared runs its groups on this machine (one at a time, or --parallel N on the CPU): use the local executor "
                            "with at most one GPU, or drop shared")
        if self.shared and any(k == "TRAIN.SEEDED_DATA_STREAM" for k in self.opts[::2]):
            raise UserError("shared sets TRAIN.SEEDED_DATA_STREAM True itself: drop it from opts")
        if self.parallel > 1 and (self.gpus or self.executor != "local"):
            raise UserError("parallel is for the local executor on the CPU; with gpus, one job runs per listed GPU "
                            "(list a GPU twice for two jobs on it)")
        if self.host not in HOSTS:
            raise UserError(f"host must be one of {sorted(HOSTS)} (textrefiner/protocols/hosts.py), got {self.host!r}")
        host = get_host(self.host)
        self.trainers = list(self.trainers or host.trainers)
        self.cfg = self.cfg or host.configs[self.protocol]
        self.datasets = list(self.datasets or self._default_datasets())
        self.shots = [int(k) for k in self.shots or DEFAULT_SHOTS[self.protocol]]
        self.seeds = [int(s) for s in self.seeds]
        self.gpus = [str(g) for g in self.gpus]
        self.log_dir = self.log_dir or osp.join(self.output, "sweep_logs")
        unknown = [t for t in self.compare or () if t not in self.trainers]
        if unknown:
            raise UserError(f"compare names {', '.join(unknown)}, which this sweep does not run (its trainers: "
                            f"{', '.join(self.trainers)})")
        self.check_variants()
        if self.compare and self.variants:
            raise UserError("compare and variants: the table has a row per trainer and variant; compare two of "
                            "them afterwards with parse_test_res.py OUTPUT --table PROTOCOL --compare A B (the "
                            "labels it lists), or drop compare")
        if self.compare is None and len(self.trainers) == 2 and not self.variants:
            # the baseline first (A) and its TextRefiner variant second (B), whatever order the
            # trainers run in (the host lists CoOp_TextRefiner first): B-A is TextRefiner's gain
            self.compare = sorted(self.trainers, key=lambda t: t.endswith("_TextRefiner"))
        return self

    def check_variants(self) -> None:
        """Each variant: a safe, unique folder name, and overrides that neither the protocol, ``opts``
        nor the layout own (one-line ``UserError`` naming the variant and the fix)."""
        if self.variants and self.tag:
            raise UserError("tag and variants: each variant's name is its run tag; drop tag (or add it to "
                            "the variant names)")
        opts_keys = set(self.opts[::2])
        for name, overrides in self.variants.items():
            where = f"variant {name!r}"
            try:
                check_tag(name)
                check_opts(overrides)
            except ValueError as e:
                raise UserError(f"{where}: {e}") from None
            keys = overrides[::2]
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            both = sorted(opts_keys & set(keys))
            paths = sorted(set(keys) & set(NOT_SETTINGS))
            if repeated:
                raise UserError(f"{where} sets {', '.join(repeated)} twice: set each key once")
            if both:
                raise UserError(f"{where} sets {', '.join(both)}, which opts also sets: set it in opts (all "
                                "variants) or in each variant, not both")
            if paths:
                raise UserError(f"{where} sets {', '.join(paths)}: a path or the seed is not a setting (variants "
                                "share the sweep's output, data and seeds); drop it from the variant")

    def setups(self, trainer: str) -> List[Setup]:
        """The settings ``trainer`` runs with: one per variant (its name as the run tag), else the sweep's."""
        opts = tuple(self.opts) + (SHARED_OPTS if self.shared else ())
        base = Setup(trainer, self.cfg, self.data, self.output, opts, str(self.tag or ""), bool(self.overwrite))
        return [replace(base, opts=base.opts + tuple(overrides), tag=name)
                for name, overrides in self.variants.items()] or [base]

    def _default_datasets(self) -> List[str]:
        if self.source and self.protocol != "xd":
            raise UserError(f"source is the cross-dataset protocol's (protocol: xd), not {self.protocol}'s: drop it")
        if self.protocol != "xd" or (self.source or XD_SOURCE) == XD_SOURCE:
            return list(DEFAULT_DATASETS[self.protocol])
        if self.source not in XD_TARGET_GROUPS:
            raise UserError(f"source {self.source} has no default targets (textrefiner/results/benchmarks.py): "
                            f"name them with datasets: / --datasets")
        return [d for group in XD_TARGET_GROUPS[self.source].values() for d in group]

    def protocol_options(self) -> Dict[str, Any]:
        """What this protocol's job builder and table take besides the grid: xd's source."""
        return {"source": self.source or XD_SOURCE} if self.protocol == "xd" else {}

    def jobs(self) -> List[Job]:
        """The grid, ordered so that all trainers (and variants) of a (dataset, shots, seed) run one
        after another."""
        jobs = []
        for trainer in self.trainers:
            for setup in self.setups(trainer):
                jobs += PROTOCOLS[self.protocol](setup, self.datasets, self.seeds, self.shots,
                                                 **self.protocol_options())
        order = {d: i for i, d in enumerate(paper_order(j.dataset for j in jobs))}
        return sorted(jobs, key=lambda j: (order[j.dataset], j.shots, j.seed))  # stable: trainer order kept


def _flat_opts(opts) -> List[str]:
    if isinstance(opts, dict):
        return [str(x) for pair in opts.items() for x in pair]
    return [str(x) for x in opts]


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _scalar(x) -> bool:
    return isinstance(x, (str, int, float)) and not isinstance(x, bool)


#: list key -> (what each item must be, the check, an example); items may not repeat unless noted
_LISTS = {
    "trainers": ("trainer names", _scalar, "[CoOp, CoOp_TextRefiner]"),
    "datasets": ("dataset config names", _scalar, "[caltech101, dtd]"),
    "seeds": ("whole numbers >= 0", _whole, "[1, 2, 3]"),
    "shots": ("whole numbers >= 0", _whole, "[1, 2, 4, 8, 16]"),
    "gpus": ("GPU numbers", _scalar, "[0, 1]"),
    "compare": ("two trainer names", _scalar, "[CoOp, CoOp_TextRefiner]"),
}
#: keys whose value is one string (a number is taken as its text, e.g. tag: 20)
_STRINGS = ("protocol", "host", "cfg", "data", "output", "tag", "executor", "log_dir", "source")
#: keys whose list may name an item twice (two jobs at a time on one GPU)
_REPEATABLE = ("gpus",)


def _type_name(value) -> str:
    return {bool: "true/false", dict: "a mapping", list: "a list", str: "a string", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _checked(key: str, value, source: str):
    """``value`` for sweep key ``key`` if it has the right type, else a UserError saying what is expected."""
    flag = "variant" if key == "variants" else key.replace("_", "-")
    where = f"--{flag}" if source == "command line" else f"{source}: {key}"
    got = f"got {_type_name(value)} {value!r}"
    if key in _LISTS:
        items, check, example = _LISTS[key]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list of {items} (e.g. {key}: {example}), {got}")
        if not value:
            raise UserError(f"{where} is an empty list: name at least one, or leave the key out for the default")
        bad = [x for x in value if not check(x)]
        if bad:
            raise UserError(f"{where} must be a list of {items} (e.g. {key}: {example}); {bad[0]!r} is not")
        repeated = sorted({str(x) for x in value if list(value).count(x) > 1})
        if repeated and key not in _REPEATABLE:
            raise UserError(f"{where} names {', '.join(repeated)} more than once: list each once")
        if key == "compare" and len(value) != 2:
            raise UserError(f"{where} takes two trainer names A and B (e.g. {key}: {example}), {got}")
        return list(value) if check is _whole else [str(x) for x in value]
    if key in _STRINGS:
        if not _scalar(value):
            raise UserError(f"{where} must be a single name or path, {got}")
        if not str(value).strip():
            raise UserError(f"{where} is empty: give a value, or leave the key out for the default")
        return str(value)
    if key == "parallel":
        if not _whole(value) or value < 1:
            raise UserError(f"{where} must be a whole number >= 1 (jobs at once on the CPU), {got}")
        return value
    if key in ("overwrite", "shared"):
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, {got}")
        return value
    if key == "slurm":
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping of submitit parameters (e.g. slurm: "
                            f"{{slurm_partition: gpu, timeout_min: 600}}), {got}")
        if not value:
            raise UserError(f"{where} is an empty mapping: give parameters, or leave the key out")
        return dict(value)
    if key == "variants":
        return _variants(value, where, got)
    if key == "opts":
        if not isinstance(value, (dict, list, tuple)):
            raise UserError(f"{where} must be a mapping of train.py config keys to values (e.g. opts: "
                            f"{{OPTIM.MAX_EPOCH: 2}}) or a flat KEY VALUE list, {got}")
        if not value:
            raise UserError(f"{where} is empty: give KEY VALUE overrides, or leave the key out for none")
        return _flat_opts(value)
    return value


def _variants(value, where: str, got: str) -> Dict[str, List[str]]:
    """name -> flat KEY VALUE list; from a file a mapping of mappings ({} is the config's own settings),
    from the flags a list of [NAME, KEY, VALUE, ...] lists."""
    example = "variants: {m10: {TRAINER.TEXTREFINER.CACHE_SIZE: 10}}"
    if isinstance(value, (list, tuple)):  # --variant NAME [KEY VALUE ...], repeated
        names = [str(v[0]) for v in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(f"--variant names {', '.join(repeated)} more than once: give each variant a unique name")
        value = {str(v[0]): list(v[1:]) for v in value}
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a mapping of variant names to their overrides (e.g. {example}), {got}")
    if not value:
        raise UserError(f"{where} is an empty mapping: name at least one variant, or leave the key out")
    variants = {}
    for name, overrides in value.items():
        if not _scalar(name) or not str(name).strip():
            raise UserError(f"{where}: variant name {name!r} must be a name (e.g. {example})")
        if overrides is None:
            overrides = {}  # "release:" with nothing after it: the config's own settings
        if not isinstance(overrides, (dict, list, tuple)):
            raise UserError(f"{where}: variant {name!r} must be a mapping of config keys to values (e.g. "
                            f"{example}; {{}} for none), got {_type_name(overrides)} {overrides!r}")
        variants[str(name)] = _flat_opts(overrides)
    return variants


def load_yaml(path: str) -> Dict[str, Any]:
    """The sweep file's keys; a missing, unreadable or broken file is a UserError naming it."""
    if not osp.isfile(path):
        what = "is a folder" if osp.isdir(path) else "not found"
        raise UserError(f"Sweep file {path} {what}: pass a YAML file with --config (configs/sweeps/ has examples)")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({' '.join(str(e).split())}): fix the syntax there") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read sweep file {path}: {e}") from None
    if values is None:
        raise UserError(f"{path} is empty: a sweep file needs at least protocol: (see textrefiner/sweep/settings.py)")
    if not isinstance(values, dict):
        raise UserError(f"{path}: a sweep file is a mapping of keys (see textrefiner/sweep/settings.py), "
                        f"got {_type_name(values)}")
    return values
