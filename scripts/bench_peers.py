"""``make bench``'s comparison with ``make peers``: our figures over OpenNMT-py's, from outputs/peers/opennmt.json.

Float32 and bf16 are both divided by OpenNMT-py's float32; the printout says how long before the
peers were measured: this host's speed drifts, so only a pair measured back to back is a comparison.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "outputs" / "peers" / "opennmt.json"
# (our figure, OpenNMT-py's figure) for each comparison: paths into bench.json and opennmt.json
PEER_PAIRS = {
    "bahdanau / additive, tgt tok/s": (("train", "bahdanau", "tgt_tok_per_s"), ("train", "additive", "tgt_tok_per_s")),
    "luong input feeding / general": (
        ("train", "luong_input_feed", "tgt_tok_per_s"),
        ("train", "general", "tgt_tok_per_s"),
    ),
    "luong fast path / general": (("train", "luong", "tgt_tok_per_s"), ("train", "general", "tgt_tok_per_s")),
    "greedy test2016, sent/s": (("decode", "greedy_sent_per_s"), ("decode", "greedy", "sent_per_s")),
    "beam 5 test2016, sent/s": (("decode", "beam5_sent_per_s"), ("decode", "beam5", "sent_per_s")),
    "transformer, tgt tok/s": (("train", "transformer", "tgt_tok_per_s"), ("train", "transformer", "tgt_tok_per_s")),
    "transformer greedy, sent/s": (
        ("decode_transformer", "greedy_sent_per_s"),
        ("decode", "transformer_greedy", "sent_per_s"),
    ),
}


def figure(value: float | None, spec: str = ",.0f") -> str:
    """A figure for the table, or ``n/a`` where the device could not run it (bf16 on a CPU without it)."""
    return "n/a" if value is None else format(value, spec)


def _lookup(tree: dict, path: tuple[str, ...]):
    """The value at ``path`` in the nested dicts ``tree``, or None where a key is missing."""
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def peer_ratios(report: dict, peers: dict) -> dict:
    """Ours over OpenNMT-py's float32 for each of :data:`PEER_PAIRS`: ``{name: {"fp32": r, "bf16": r}}``."""
    ratios = {}
    for name, (ours, theirs) in PEER_PAIRS.items():
        peer = _lookup(peers, theirs)
        if not peer:
            continue
        fp32, bf16 = _lookup(report, ours), _lookup(report, (*ours[:-1], ours[-1] + "_bf16"))
        if fp32 is None and bf16 is None:  # a row this run did not measure (--rows)
            continue
        ratios[name] = {
            "opennmt_fp32": peer,
            "fp32": None if fp32 is None else fp32 / peer,
            "bf16": None if bf16 is None else bf16 / peer,
        }
    return ratios


def print_peer_ratios(report: dict) -> None:
    """Add and print the ratios to ``make peers``' figures, when there are any."""
    if not PEERS.is_file():
        print("no outputs/peers/opennmt.json: run make peers just before for the ratios to OpenNMT-py")
        return
    try:
        peers = json.loads(PEERS.read_text())
    except json.JSONDecodeError as error:
        print(f"{PEERS} is not JSON ({error}); run make peers again for the ratios to OpenNMT-py")
        return
    age = (time.time() - PEERS.stat().st_mtime) / 60
    ratios = peer_ratios(report, peers)
    report["against_opennmt"] = {"peers_measured_minutes_before": round(age), "ratios": ratios}
    print(f"against OpenNMT-py 3.5.1 float32 ({PEERS.relative_to(REPO)}, written {age:,.0f} minutes before):")
    for name, r in ratios.items():
        print(
            f"  {name:<32} OpenNMT-py {r['opennmt_fp32']:>7,.0f}   ours fp32 {figure(r['fp32'], '.2f')}x"
            f"   bf16 {figure(r['bf16'], '.2f')}x"
        )
