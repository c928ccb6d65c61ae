"""Command-line plumbing shared by the zoo entries: flags from a config dataclass.

Every field of an entry's `Config` becomes an absl flag of the same name
with the entry's default (`--dataset`, `--epochs`, `--latent_size`, ...);
`--workdir` names the output folder. An unknown flag is an error (absl), an
invalid value a ValueError naming the field.

`--help` lists the entry's own flags with their help and defaults, grouped
(`flag_groups`: the entry's model options, then the data, training,
evaluation and output options every entry shares); `--helpfull` adds absl's
and TensorFlow's. A run logs what the user needs: TensorFlow's own INFO lines
(checkpoint sharding, SavedModel signature renaming) and repeated identical
lines (the dataset's "Loading ..." for every pipeline) are held back unless
`--verbosity=1` asks for more.
"""

import collections
import dataclasses
import inspect
import logging as std_logging
import os
import re
import sys
import textwrap
import typing

from absl import app
from absl import flags
from absl import logging

from tfvae.training import train
from tfvae import validation

FLAGS = flags.FLAGS

GROUPS = ("model", "data", "training", "evaluation", "output")
"""The `--help` groups, in order: "model" holds the fields an entry's Config adds to
`TrainConfig` (its model and objective options); the others split `TrainConfig`'s."""

TRAIN_CONFIG_GROUPS = {
    "data": ("dataset", "data_dir", "binarize", "max_train_examples", "download"),
    "training": ("epochs", "batch_size", "seed", "learning_rate", "optimizer", "ema_decay",
                 "patience", "strategy", "tpu", "jit_compile", "steps_per_execution",
                 "weight_prior_scale", "mixed_precision"),
    "evaluation": ("eval_num_samples", "max_eval_examples"),
    "output": ("image_summaries", "export", "export_versions_to_keep",
               "export_log_prob_samples"),
}
"""The group of every `TrainConfig` field (a field missing here is listed under
"training"; `tests/test_cli_help.py` checks that none is missing)."""

WORKDIR_HELP = "Output folder (created; resumed if it exists)."

HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "-h", "-?")
"""Arguments that print the entry's grouped help (absl's `--helpfull` prints every flag)."""


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


def flag_groups(config_cls):
    """{group: [field names in declaration order]} for `--help`, groups in `GROUPS` order.

    A field of `TrainConfig` (also one an entry re-declares with another
    default) goes to its `TRAIN_CONFIG_GROUPS` group; any other field was added
    by the entry and goes to "model". No entry needs to list its fields.
    """
    placed = {name: group for group, names in TRAIN_CONFIG_GROUPS.items() for name in names}
    shared = {field.name for field in dataclasses.fields(train.TrainConfig)}
    groups = collections.OrderedDict((group, []) for group in GROUPS)
    for field in dataclasses.fields(config_cls):
        group = placed.get(field.name, "training") if field.name in shared else "model"
        groups[group].append(field.name)
    return groups


def _default_text(value):
    """A default as the user types it: 'text', 32, true, '512,512'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "'" + ",".join(str(v) for v in value) + "'"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _field_default(field):
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _kind_text(kind):
    """What a flag of the field type `kind` takes ("" for a string or a bool)."""
    if kind is int:
        return "an integer"
    if kind is float:
        return "a float"
    if kind is tuple or typing.get_origin(kind) is tuple:
        return "comma-separated integers"
    return ""


def _wrap(text, indent, more="    "):
    """`text` filled to 96 columns, its first line at `indent`, the others at `indent + more`."""
    return textwrap.fill(text, width=96, initial_indent=indent,
                         subsequent_indent=indent + more)


def help_text(entry_module):
    """The `--help` text of `entry_module`: its docstring, then its flags by group.

    Each flag shows its help (the Config's `Attributes:` docstring) and its
    default; for an entry with `PRESETS`, defaults that differ between
    presets are shown for each.
    """
    config_cls = entry_module.Config
    presets = vars(entry_module).get("PRESETS") or {}
    helps = _field_help(config_cls)
    hints = typing.get_type_hints(config_cls)
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    preset_defaults = {preset: {f.name: _field_default(f) for f in dataclasses.fields(cls)}
                       for preset, cls in presets.items()}
    spec = getattr(entry_module, "__spec__", None)     # "zoo.vae" also when run as __main__
    name = spec.name if spec is not None else entry_module.__name__
    lines = [(entry_module.__doc__ or "").strip(), "",
             f"Usage: python -m {name} --workdir=DIR [--flag=value ...]", "",
             "Required:", f"  --workdir: {WORKDIR_HELP}"]
    for group, names in flag_groups(config_cls).items():
        lines += ["", f"{group.capitalize()}:"]
        for field_name in names:
            kind = hints[field_name]
            default = _field_default(fields[field_name])
            flag = f"--[no]{field_name}" if kind is bool else f"--{field_name}"
            lines.append(_wrap(f"{flag}: {helps.get(field_name, field_name)}", "  "))
            details = [f"default: {_default_text(default)}"]
            details += [f"--preset={preset}: {_default_text(values[field_name])}"
                        for preset, values in preset_defaults.items()
                        if values[field_name] != default and field_name != "preset"]
            details += [_kind_text(kind)] if _kind_text(kind) else []
            lines.append(_wrap(f"({'; '.join(details)})", "      ", more=""))
        if group == "output":
            lines += [_wrap("--verbosity: absl's logging level: 1 also shows TensorFlow's own "
                            "INFO and start-up lines; -1 only warnings.", "  "),
                      "      (default: 0; an integer)"]
    lines += ["", "absl's and TensorFlow's own flags: --helpfull.", ""]
    return "\n".join(lines)


def define_flags(config_cls):
    """Defines one absl flag per field of `config_cls` (a dataclass)."""
    helps = _field_help(config_cls)
    hints = typing.get_type_hints(config_cls)
    flags.DEFINE_string("workdir", None, WORKDIR_HELP)
    flags.mark_flag_as_required("workdir")
    for field in dataclasses.fields(config_cls):
        default = _field_default(field)
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


class OutputFilter(std_logging.Filter):
    """Holds back absl INFO records a user of the CLI does not need.

    Drops INFO records logged by TensorFlow's own Python files (through absl:
    "Sharding callback duration", SavedModel signature renaming and
    fingerprint notices) and any INFO record whose message was shown already
    (the dataset's "Loading ..." line comes once per pipeline: validation,
    test and every epoch's training data). Warnings and errors always pass.

    Args:
      quiet_dirs: source folders whose INFO records are dropped (default:
        the installed `tensorflow` package's).
    """

    def __init__(self, quiet_dirs=None):
        super().__init__()
        if quiet_dirs is None:
            quiet_dirs = [os.path.dirname(sys.modules["tensorflow"].__file__)]
        self._quiet_dirs = tuple(os.path.join(os.path.abspath(d), "") for d in quiet_dirs)
        self._seen = set()

    def filter(self, record):
        if record.levelno != std_logging.INFO:
            return True
        if os.path.abspath(record.pathname).startswith(self._quiet_dirs):
            return False
        message = record.getMessage()
        if message in self._seen:
            return False
        self._seen.add(message)
        return True


def configure_output():
    """Sets what a run logs, from `--verbosity` (call after the flags are parsed).

    `--verbosity` not given: absl INFO, through `OutputFilter`, and
    TensorFlow's own Python logger ("tensorflow") at WARNING. `--verbosity`
    given: absl's level as set, and every line.
    """
    if FLAGS["verbosity"].present:
        return
    logging.set_verbosity(logging.INFO)
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
    absl_logger = logging.get_absl_logger()
    if not any(isinstance(f, OutputFilter) for f in absl_logger.filters):
        absl_logger.addFilter(OutputFilter())


def parse_flags(entry_module, argv):
    """absl's flag parsing, except that `HELP_FLAGS` print `help_text` and exit 0."""
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in HELP_FLAGS:
            sys.stdout.write(help_text(entry_module))
            sys.stdout.flush()
            sys.exit(0)
    return app.parse_flags_with_usage(argv)


def main(entry_module):
    """Runs `entry_module` from the command line (see `zoo` for what an entry defines)."""
    define_flags(entry_module.Config)
    presets = vars(entry_module).get("PRESETS")

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        configure_output()
        try:
            config = config_from_flags(entry_module.Config, presets)
            config.check_inputs()        # files the flags name, before anything is written
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        train.run(config, entry_module.build_model, FLAGS.workdir)

    app.run(_main, flags_parser=lambda argv: parse_flags(entry_module, argv))
