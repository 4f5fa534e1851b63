"""One run's config: built from ``train.py``'s arguments exactly as ``train.py`` builds it
(``build``, ``merge``), and the checks it passes before anything is written (``checks``).
``train.py`` (``cli/train.py``), the run identity (``protocols/identity.py``) and the sweep's
preflight (``sweep/preflight.py``) all use it, so they see the same config."""
from .build import build_parser, build_run_config, register_plugins, reset_cfg, setup_cfg  # noqa: F401
from .checks import check_cfg_values, config_warnings  # noqa: F401
from .merge import duplicate_keys, merge_config  # noqa: F401
