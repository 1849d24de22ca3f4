import json
import os
import subprocess
import sys

from seq2seq.hardware import CACHE_CAPACITIES, bound_kernel_caches


def test_kernel_caches_are_bounded_by_default():
    environ: dict[str, str] = {}
    assert bound_kernel_caches(environ) == {name: str(value) for name, value in CACHE_CAPACITIES.items()}
    assert environ == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "256", "LRU_CACHE_CAPACITY": "16"}


def test_a_users_cache_setting_wins():
    environ = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1"}
    assert bound_kernel_caches(environ) == environ
    assert environ == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1"}


def test_translator_bounds_the_caches_before_decoding(trained_run):
    """The translator (CLI, make eval) sets the capacities in its own process, where none were set."""
    code = (
        "import json, os\n"
        "from seq2seq.translator import Translator\n"
        f"Translator.from_checkpoint({str(trained_run / 'best.pt')!r}).translate(['ein Hund .'])\n"
        "print(json.dumps({k: os.environ.get(k) for k in ('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'LRU_CACHE_CAPACITY')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in CACHE_CAPACITIES}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == {k: str(v) for k, v in CACHE_CAPACITIES.items()}
