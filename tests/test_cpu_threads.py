"""OpenMP threads wait passively in every dimsum command unless the user chose otherwise: spinning
threads stall a machine that another process shares (numbers: benchmarks/cpu_threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys

# Reports OMP_WAIT_POLICY at the moment torch is first imported, which is when OpenMP reads it.
SPY = """
import os, sys
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("policy when torch loads:", os.environ.get("OMP_WAIT_POLICY"))
            sys.meta_path.remove(self)
sys.meta_path.insert(0, Spy())
import dimsum_core.cli.main
"""


def policy_when_torch_loads(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", SPY], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split("policy when torch loads:")[1].split()[0]


def test_the_cli_sets_a_passive_wait_policy_before_torch_loads_and_keeps_the_users():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert policy_when_torch_loads(env) == "PASSIVE"
    assert policy_when_torch_loads({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
