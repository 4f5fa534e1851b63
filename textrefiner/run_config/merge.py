"""Config files and ``KEY VALUE`` pairs merged with yacs's own rules, its errors made one ``UserError``
line: an unknown key with the closest valid one, a value of the wrong type, an odd number of
overrides, a YAML file that gives a key twice."""
import difflib
from typing import List, Sequence

from textrefiner.config import KEY_ALIASES
from textrefiner.errors import UserError


def _all_keys(node, prefix: str = "") -> List[str]:
    keys = []
    for key, value in node.items():
        keys += _all_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


def closest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def _foreign_trainer_hint(key: str, cfg) -> str:
    """For a whole trainer section this project lacks (a YAML of another method, e.g. CoCoOp's
    TRAINER.COCOOP): what sections exist and where this project's configs are."""
    parts = key.split(".")
    if len(parts) < 2 or parts[0] != "TRAINER" or parts[1] in cfg.TRAINER:
        return ""
    sections = ", ".join(f"TRAINER.{k}" for k in sorted(cfg.TRAINER) if k != "NAME")
    return (f"; TRAINER.{parts[1]} belongs to a method this project does not have (its trainer sections: "
            f"{sections}): use a config of configs/trainers/<Trainer>/ for one of its trainers")


def duplicate_keys(path: str) -> List[str]:
    """Keys that a YAML file gives twice in one mapping (YAML keeps the last silently), with their lines."""
    import yaml

    found = []

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
                if key in seen:
                    found.append(f"{key} (lines {seen[key]} and {line})")
                seen.setdefault(key, line)
            return super().construct_mapping(node, deep=deep)

    with open(path, encoding="utf-8") as f:
        yaml.load(f, Loader=Loader)
    return found


_noted = set()


def _note_alias(alias: str) -> str:
    key = KEY_ALIASES[alias]
    if alias not in _noted:
        _noted.add(alias)
        print(f"Note: {alias} (the PromptKD release's name) is read as {key}")
    return key


def _alias_opts(opts: Sequence) -> List:
    opts = list(opts)
    return [_note_alias(x) if i % 2 == 0 and x in KEY_ALIASES else x for i, x in enumerate(opts)]


def _alias_file(loaded) -> None:
    """Move the aliased keys a loaded YAML file gives to our names."""
    for alias in KEY_ALIASES:
        *parents, leaf = alias.split(".")
        node = loaded
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            value = node.pop(leaf)
            *target_parents, target_leaf = _note_alias(alias).split(".")
            node = loaded
            for part in target_parents:
                node = node.setdefault(part, type(loaded)())
            node[target_leaf] = value


def merge_config(cfg, path: str = "", opts: Sequence = ()) -> None:
    """``cfg.merge_from_file(path)`` or ``cfg.merge_from_list(opts)``, with yacs's errors made one line
    and the keys of ``KEY_ALIASES`` read as ours."""
    where = path or "the command line"
    if opts and len(opts) % 2:
        raise UserError(f"Config overrides come in KEY VALUE pairs; got an odd number: {list(opts)}")
    try:
        if path:
            twice = duplicate_keys(path)
            if twice:
                raise UserError(f"{path} gives {', '.join(twice)} twice; YAML would keep only the last (a second "
                                "block replaces the whole first one): merge them into one")
            with open(path) as f:  # yacs's merge_from_file, with the aliases renamed in between
                loaded = cfg.load_cfg(f)
            _alias_file(loaded)
            cfg.merge_from_other_cfg(loaded)
        else:
            cfg.merge_from_list(_alias_opts(opts))
    except (KeyError, AssertionError) as e:
        message = str(e.args[0]) if e.args else ""
        if "Non-existent" not in message:  # yacs: "Non-existent config key: K" / "Non-existent key: K"
            raise UserError(f"Cannot merge {where}: {message}") from None
        key = message.split(":", 1)[1].strip()
        raise UserError(f"Unknown config key {key} in {where}{closest(key, _all_keys(cfg))}"
                        f"{_foreign_trainer_hint(key, cfg)}") from None
    except ValueError as e:  # yacs: "Type mismatch (<class 'float'> vs. <class 'str'>) with values (...) for config key: K"
        raise UserError(f"Bad value in {where}: {' '.join(str(e).split())}; give a value of the key's type") from None
    except UserError:
        raise
    except Exception as e:  # a YAML syntax error, a file that is not a mapping
        raise UserError(f"Cannot read {where}: {' '.join(str(e).split())[:300]}") from None
