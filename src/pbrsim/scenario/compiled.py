"""The scenario schema's validators, kept between runs as Python keeps bytecode.

pydantic builds the validators of the scenario models from their annotations on first use: about 0.1 s in
every process, a third of ``pbrsim validate``. Once built, their core schemas are saved next to the module's
bytecode (``scenario/__pycache__``, or under ``PYTHONPYCACHEPREFIX``) and later processes rebuild the validators
from them in a few milliseconds. The file's name carries a digest of the scenario package's source and of the
Python and pydantic versions, so any change to either builds afresh. As with bytecode, nothing is written when
Python writes no bytecode (``PYTHONDONTWRITEBYTECODE``, ``-B``), and a file that cannot be read or written is
simply not used: the validators are then built as usual, with the same results.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from functools import lru_cache, partial
from importlib.util import cache_from_source
from pathlib import Path

import pydantic
import pydantic_core
from pydantic import BaseModel

PREFIX = "scenario-schema."
SUFFIX = ".pickle"
state = {"source": None}  # how this process got its validators: "cache" or "built" (checked by the tests)


def ensure(models: list[type[BaseModel]]) -> None:
    """Make ``models`` (those a scenario's validation completes, the root first) ready to validate: from the
    cache when it holds them, else built (and saved)."""
    if models[0].__pydantic_complete__:
        return
    if _restore(models):
        state["source"] = "cache"
        return
    for cls in models:
        cls.model_rebuild()
    state["source"] = "built"
    _save(models)


@lru_cache(maxsize=1)
def cache_file() -> Path:
    """Where this source and these versions keep the compiled schema."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for part in (sys.version, pydantic.VERSION, pydantic_core.__version__):
        h.update(part.encode() + b"\0")
    for path in sorted(here.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    folder = Path(cache_from_source(str(here / "schema.py"))).parent
    return folder / f"{PREFIX}{h.hexdigest()[:24]}{SUFFIX}"


def _restore(models: list[type[BaseModel]]) -> bool:
    """Set each model's validator and serializer from the cached core schemas; False (nothing changed) when
    there is no usable cache file."""
    try:
        path = cache_file()
        if not _trusted(path):
            return False
        with open(path, "rb") as fh:
            saved = pickle.load(fh)
        classes = {_name(c): c for c in models}
        if set(saved) != set(classes):
            return False
        from pydantic._internal._config import ConfigWrapper
        from pydantic._internal._model_construction import LazyClassAttribute, generate_pydantic_signature

        ready = []
        for name, (schema, core_config) in saved.items():
            cls = classes[name]
            config = ConfigWrapper(cls.model_config, check=False)
            ready.append((cls, {
                "__pydantic_computed_fields__": {k: v.info for k, v in cls.__pydantic_decorators__.computed_fields.items()},
                "__pydantic_core_schema__": schema,
                "__pydantic_validator__": _validator(cls, schema, core_config, config),
                "__pydantic_serializer__": pydantic_core.SchemaSerializer(schema, core_config),
                "__signature__": LazyClassAttribute("__signature__", partial(
                    generate_pydantic_signature, init=cls.__init__, fields=cls.__pydantic_fields__,
                    validate_by_name=config.validate_by_name, extra=config.extra)),
            }))
    except Exception:  # unreadable, truncated, from another layout or another pydantic's internals: build instead
        return False
    for cls, attributes in ready:  # all made before any is set: a model is restored whole or not at all
        for key, value in attributes.items():
            setattr(cls, key, value)
        cls.__pydantic_complete__ = True
    return True


def _name(cls: type[BaseModel]) -> str:
    """A model's name in the file."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _validator(cls, schema, core_config, config):
    """The validator pydantic itself would make: with its plugins when any may apply (the check for them scans
    every installed package, so it is skipped when they are switched off, as the command line does)."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in ("__all__", "1", "true"):  # pydantic's own test
        return pydantic_core.SchemaValidator(schema, core_config)
    from pydantic.plugin._schema_validator import create_schema_validator

    return create_schema_validator(schema, cls, cls.__module__, cls.__qualname__, "BaseModel", core_config,
                                   config.plugin_settings)


def _trusted(path: Path) -> bool:
    """Only a regular file of this user's that nobody else may write is loaded (a pickle runs code, as bytecode does)."""
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and not st.st_mode & 0o022


def _save(models: list[type[BaseModel]]) -> None:
    """Write the built core schemas, atomically, where bytecode goes; other versions of this file are removed."""
    if sys.dont_write_bytecode:
        return
    tmp = None
    try:
        from pydantic._internal._config import ConfigWrapper

        path = cache_file()
        data = {}
        for cls in models:
            core_config = ConfigWrapper(cls.model_config, check=False).core_config(title=cls.__name__)
            data[_name(cls)] = (cls.__pydantic_core_schema__, core_config)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(mode=0o755, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
        for old in path.parent.glob(f"{PREFIX}*{SUFFIX}"):  # earlier sources' files (only this module writes these names)
            if old != path:
                old.unlink(missing_ok=True)
    except Exception:  # read-only install, full disk, a schema that does not pickle: keep building each time
        try:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass
