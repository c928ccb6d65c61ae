"""Command-line plumbing shared by the zoo entries: flags from a config dataclass.

Every field of an entry's `Config` becomes an absl flag of the same name
with the entry's default (`--dataset`, `--epochs`, `--latent_size`, ...);
`--workdir` names the output folder. An unknown flag is an error (absl), an
invalid value a ValueError naming the field.
"""

import dataclasses
import inspect
import re
import sys
import typing

from absl import app
from absl import flags
from absl import logging

from tfvae.training import train
from tfvae import validation

FLAGS = flags.FLAGS


def _field_help(config_cls):
    """Maps field name -> help text from the `Attributes:` docstring sections."""
    helps = {}
    for cls in reversed(config_cls.__mro__):
        doc = inspect.getdoc(cls) or ""
        if "Attributes:" not in doc:
            continue
        section = doc.split("Attributes:", 1)[1]
        for match in re.finditer(r"^  (\w+): (.*(?:\n    .*)*)", section, re.M):
            helps[match.group(1)] = " ".join(match.group(2).split())
    return helps


def preset(base, name, module=None, **defaults):
    """A subclass of the config dataclass `base` with other defaults (a zoo preset).

    `name` is the entry's (or preset's) name; the class belongs to the module
    `module` (default "zoo.<name>"), which its config.json records as the entry.

    Raises:
      ValueError: a default names a field `base` does not have.
    """
    hints = typing.get_type_hints(base)
    unknown = sorted(set(defaults) - set(hints))
    if unknown:
        raise ValueError(f"{base.__name__} has no field(s) {unknown}.")
    return dataclasses.make_dataclass(
        name, [(k, hints[k], dataclasses.field(default=v)) for k, v in defaults.items()],
        bases=(base,), namespace={"__doc__": f"{name}: {base.__name__} with {defaults}.",
                                  "__module__": module or f"zoo.{name}"})


def define_flags(config_cls):
    """Defines one absl flag per field of `config_cls` (a dataclass)."""
    helps = _field_help(config_cls)
    hints = typing.get_type_hints(config_cls)
    flags.DEFINE_string("workdir", None, "Output folder (created; resumed if it exists).")
    flags.mark_flag_as_required("workdir")
    for field in dataclasses.fields(config_cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind = hints[field.name]
        text = helps.get(field.name, field.name)
        if kind is bool:
            flags.DEFINE_bool(field.name, default, text)
        elif kind is int:
            flags.DEFINE_integer(field.name, default, text)
        elif kind is float:
            flags.DEFINE_float(field.name, default, text)
        elif kind is str:
            flags.DEFINE_string(field.name, default, text)
        elif kind is tuple or typing.get_origin(kind) is tuple:
            flags.DEFINE_list(field.name, [str(v) for v in default], text)
        else:
            raise TypeError(f"Config field {field.name} has unsupported type {kind}")


def config_from_flags(config_cls, presets=None):
    """Builds the config from the parsed flags (validated by the dataclass).

    Flags given on the command line override the defaults of `config_cls`,
    or, for an entry with `presets` ({name: Config class}, selected by the
    config's `preset` field), of the class `--preset` names.
    """
    if presets:
        validation.one_of("preset", FLAGS.preset, tuple(presets))
        config_cls = presets[FLAGS.preset]
    hints = typing.get_type_hints(config_cls)
    values = {}
    for field in dataclasses.fields(config_cls):
        if not FLAGS[field.name].present:
            continue                      # the (preset's) default
        value = FLAGS[field.name].value
        if tuple in (hints[field.name], typing.get_origin(hints[field.name])):
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise ValueError(f"`{field.name}` must be a comma-separated list of integers. "
                                 f"Received: {field.name}={','.join(value)}") from None
        values[field.name] = value
    return config_cls(**values)


def main_for(module_name):
    """`main` for the module called `module_name` (use `main_for(__name__)`)."""
    main(sys.modules[module_name])


def main(entry_module):
    """Runs `entry_module` from the command line (see `zoo` for what an entry defines)."""
    define_flags(entry_module.Config)
    presets = vars(entry_module).get("PRESETS")

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.INFO)
        try:
            config = config_from_flags(entry_module.Config, presets)
            config.check_inputs()        # files the flags name, before anything is written
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        train.run(config, entry_module.build_model, FLAGS.workdir)

    app.run(_main)
