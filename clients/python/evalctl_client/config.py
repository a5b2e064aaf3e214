"""Builds what Client.run() and Client.plan() send: the ConfigSource of eval_service.proto.

It mirrors `evalctl run` (clients/cpp/config_source.h):

- the YAML as written, with its file name for the controller's error messages;
- the user's config groups: every ``*.yaml`` below a subdirectory of the config file's directory
  (Hydra uses that directory as its config dir), at most 4 levels deep; ``deployment/mine.yaml``
  is the group option ``deployment: mine``. ``group_dirs`` adds more roots; a later root replaces a
  file an earlier one had;
- the overrides (``key=value``, ``+key=value``, ``++key=value``, ``~key``) and the task filter;
- ``environment``: the values of the environment variables the configuration references
  (``${oc.env:NAME}`` or ``host:NAME`` in the file, the overrides, the groups and evalctl's
  built-in groups) that are set, and only those, plus USER (from the password database when the
  environment lacks it). These values are secrets: they are sent to the controller and never
  logged here.

    source = build_config_source("my.yaml", overrides=["execution.walltime=02:00:00"])
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path, PurePath
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import EvalctlError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from .v1 import eval_service_pb2 as pb

__all__ = [
    "ConfigInput",
    "MAX_CONFIG_BYTES",
    "MAX_GROUP_FILES",
    "BUILTIN_GROUP_ENVIRONMENT",
    "build_config_source",
    "referenced_environment",
    "collect_environment",
    "local_user",
]

# A path to a YAML file, YAML text, or the configuration as a mapping.
ConfigInput = Union[str, "os.PathLike[str]", Mapping[str, Any]]

MAX_CONFIG_BYTES = 1 << 20
MAX_GROUP_FILES = 256
# Directory levels below a group root's subdirectory that are searched (as `evalctl run`).
_MAX_GROUP_DEPTH = 4

# Environment variables that evalctl's built-in config groups (controller/config/data/groups)
# reference; a unit test keeps this in step with the repository.
BUILTIN_GROUP_ENVIRONMENT: Tuple[str, ...] = ("USER",)

# As config::ReferencedEnvironment (controller/config/loader.cc).
_ENV_REFERENCE = re.compile(r"(?:oc\.env:\s*|host:\s*)([A-Za-z_][A-Za-z0-9_]*)")


def local_user() -> str:
    """The name of the user running this process, from the password database (else $USER)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())


def referenced_environment(texts: Iterable[str]) -> List[str]:
    """The names of the environment variables that `texts` reference, plus the built-in groups'
    ones, sorted."""
    names = set(BUILTIN_GROUP_ENVIRONMENT)
    for text in texts:
        names.update(_ENV_REFERENCE.findall(text))
    return sorted(names)


def collect_environment(texts: Iterable[str],
                        environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The variables `texts` reference that are set in `environ` (default: os.environ), plus USER."""
    env = os.environ if environ is None else environ
    out = {name: env[name] for name in referenced_environment(texts) if name in env}
    # execution.username defaults to ${oc.env:USER}; a process without USER still has a login name.
    if "USER" not in out:
        out["USER"] = local_user()
    return out


def _read_file(path: Path, what: str = "") -> str:
    label = f"{what}{path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFoundError(f"{label}: no such file") from None
    except PermissionError:
        raise PermissionDeniedError(f"{label}: cannot read") from None
    if not path.is_file():
        raise InvalidArgumentError(f"{label}: not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise InvalidArgumentError(
            f"{label}: larger than {MAX_CONFIG_BYTES} bytes; not a configuration")
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        raise PermissionDeniedError(f"{label}: cannot read") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"{label}: cannot read ({e})") from None


def _collect_groups(root: Path, groups: Dict[str, str]) -> None:
    """Adds the *.yaml files below the subdirectories of `root`, keyed by their path relative to
    `root` ('deployment/mine.yaml')."""
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return
    for sub in subdirs:
        for dirpath, dirnames, filenames in os.walk(sub):
            depth = len(Path(dirpath).relative_to(sub).parts)
            if depth >= _MAX_GROUP_DEPTH:
                dirnames[:] = []
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if not name.endswith(".yaml") or not path.is_file():
                    continue
                key = path.relative_to(root).as_posix()
                if key not in groups and len(groups) >= MAX_GROUP_FILES:
                    raise InvalidArgumentError(
                        f"{root}: more than {MAX_GROUP_FILES} YAML files in config group "
                        "directories")
                groups[key] = _read_file(path)


def _is_yaml_text(config: str) -> bool:
    return "\n" in config or config.lstrip().startswith("{")


def _load_config(config: ConfigInput) -> Tuple[str, str, Optional[Path]]:
    """(yaml, file name, directory of the file or None)."""
    if isinstance(config, Mapping):
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML is a dependency
            raise EvalctlError("a configuration given as a dict needs PyYAML") from None
        return yaml.safe_dump(dict(config), sort_keys=False), "<dict>", None
    if isinstance(config, str) and _is_yaml_text(config):
        if len(config.encode()) > MAX_CONFIG_BYTES:
            raise InvalidArgumentError(
                f"the configuration is larger than {MAX_CONFIG_BYTES} bytes")
        return config, "<string>", None
    if isinstance(config, (str, PurePath)) or hasattr(config, "__fspath__"):
        path = Path(os.fspath(config))  # type: ignore[arg-type]
        parent = path.parent if str(path.parent) else Path(".")
        return _read_file(path), str(config), parent
    raise TypeError(f"config must be a path, YAML text or a mapping, not {type(config).__name__}")


def build_config_source(config: ConfigInput, overrides: Sequence[str] = (),
                        tasks: Sequence[str] = (), group_dirs: Sequence[Union[str, PurePath]] = (),
                        environ: Optional[Mapping[str, str]] = None) -> pb.ConfigSource:
    """The ConfigSource for `config`.

    Args:
      config: a path (str or os.PathLike) of a YAML file; YAML text (a str with a newline, or one
        starting with `{`); or a mapping, sent as YAML.
      overrides: Hydra overrides, in order (`execution.walltime=01:00:00`, `+key=v`, `~key`).
      tasks: keep only these tasks (by name, or `name.N` for the Nth duplicate).
      group_dirs: more roots of config groups, after the config file's own directory.
      environ: where referenced variables are looked up (default: os.environ).

    Raises:
      NotFoundError, PermissionDeniedError, InvalidArgumentError: the file (or a group file) is
        missing, unreadable, not a regular file or too large.
    """
    if isinstance(overrides, str) or isinstance(tasks, str) or isinstance(group_dirs, str):
        raise TypeError("overrides, tasks and group_dirs are sequences of strings, not a string")
    yaml_text, file_name, config_dir = _load_config(config)
    groups: Dict[str, str] = {}
    roots = ([config_dir] if config_dir is not None else []) + [Path(d) for d in group_dirs]
    for root in roots:
        _collect_groups(root, groups)
    source = pb.ConfigSource(yaml=yaml_text, file_name=file_name, overrides=list(overrides),
                             task_filter=list(tasks))
    texts = [yaml_text, *overrides, *groups.values()]
    for name, value in collect_environment(texts, environ).items():
        source.environment[name] = value
    for path, content in sorted(groups.items()):
        source.group_files.add(path=path, content=content)
    return source
