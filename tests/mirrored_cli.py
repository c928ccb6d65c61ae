"""Run by test_distribute_cli.py: `python tests/mirrored_cli.py ENTRY FLAGS...` runs
`python -m zoo.ENTRY FLAGS...` as the CLI does, on two logical CPU devices (so
`--strategy=mirrored` has two replicas on a one-CPU machine)."""

import runpy
import sys

import tensorflow as tf

CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)

ENTRY = sys.argv[1]
sys.argv = [f"zoo.{ENTRY}", *sys.argv[2:]]
runpy.run_module(f"zoo.{ENTRY}", run_name="__main__", alter_sys=True)
