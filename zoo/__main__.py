"""`python -m zoo --list` prints the zoo's entries, one per line."""

import sys

from absl import app
from absl import flags

from zoo import ENTRIES

flags.DEFINE_bool("list", False, "Print the zoo entries, one per line.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS.list:
        raise app.UsageError("Use --list, or run an entry: python -m zoo.<entry> --workdir=DIR")
    sys.stdout.write("".join(f"{name}\n" for name in ENTRIES))


if __name__ == "__main__":
    app.run(main)
