"""OpenNMT-py 3.5.1 on bench's peer model, measured on this host now, for ``make bench``'s ratios.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/peer_opennmt.py     # ~7 minutes on 2 cores

This host's matrix-multiply speed changes by 2x from hour to hour, so the speed targets (ratios
to OpenNMT-py) are only meaningful with both systems measured in the same hour. The script
installs OpenNMT-py 3.5.1 into ``outputs/peers/venv`` (a virtual environment that sees this
project's torch: OpenNMT-py pins torch < 2.3 but trains and translates with 2.13 for this model),
prepares Multi30k de-en exactly as bench's peer config does (this project's pipeline: the same
filtered pairs, joint SentencePiece BPE 8k cut into per-side vocabularies), trains the peer model (embeddings 256, bidirectional LSTM encoder 2 x 128, LSTM
decoder 256 with input feeding, dropout 0.2, Adam, batches of 64 sentences) with additive
(``mlp``) and ``general`` attention, and translates test_2016_flickr greedily and with beam 5; then
its Transformer at this project's default sizes (d 256, 3 + 3 layers, 4 heads, feed-forward 1024,
batches of 64 sentences), translated greedily.
It prints the figures and writes ``outputs/peers/opennmt.json``:

- training: OpenNMT-py's own target tokens/s (non-padding gold tokens, EOS included, as bench
  counts them), the median of its 50-step reports after the first, and the peak RSS;
- decoding: 1,000 sentences over OpenNMT-py's reported translation time (model loading excluded),
  with the additive model after 1,000 updates (bench decodes a model of similar training).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from seq2seq.errors import Seq2SeqError  # noqa: E402

OUT = REPO / "outputs" / "peers"
VENV = OUT / "venv"
DEPS = "configargparse ctranslate2 fasttext-wheel flask pyahocorasick pyonmttok pyyaml rapidfuzz six spacy waitress"

RUN = """\
batch_type: sents
batch_size: 64
valid_steps: 1000000
save_checkpoint_steps: 1000000
report_every: 50
seed: 1
"""  # both models: batches of 64 sentences (~1,000 target tokens, as bench's peer rows), no validation

MODEL = """\
encoder_type: brnn
decoder_type: rnn
rnn_type: LSTM
enc_layers: 2
dec_layers: 1
enc_hid_size: 256  # bidirectional: 128 per direction
dec_hid_size: 256
word_vec_size: 256
input_feed: 1
dropout: [0.2]
optim: adam
learning_rate: 0.001
"""

# OpenNMT-py's Transformer at this project's default sizes (model=transformer): d 256, 3 + 3 layers,
# 4 heads, feed-forward 1024, sinusoidal positions, pre-norm (OpenNMT-py's layout), tied output layer.
# The learning rate rises to 1e-3 over 800 updates, as ours: OpenNMT-py's noam schedule multiplies
# learning_rate by d^-0.5 min(step^-0.5, step warmup^-1.5), 0.4525 x 256^-0.5 x 800^-0.5 = 1.0e-3 at its
# peak (its rsqrt schedule would divide 1e-3 by sqrt(800): 3.5e-5, a model that barely learns)
TRANSFORMER = """\
encoder_type: transformer
decoder_type: transformer
position_encoding: true
enc_layers: 3
dec_layers: 3
hidden_size: 256
enc_hid_size: 256
dec_hid_size: 256
word_vec_size: 256
transformer_ff: 1024
heads: 4
dropout: [0.1]
attention_dropout: [0.1]
share_decoder_embeddings: true
label_smoothing: 0.1
param_init: 0
param_init_glorot: true
optim: adam
adam_beta2: 0.998
learning_rate: 0.4525
warmup_steps: 800
decay_method: noam
"""


def run(command: list[str], log: Path, env: dict | None = None) -> tuple[str, float]:
    """Run ``command`` with its output in ``log``: the output and the command's peak RSS in MB.

    A failure stops the script with the log's tail.
    """
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed ({proc.returncode}), see {log}:\n{text[-3000:]}")
    return text, usage.ru_maxrss / 1024  # KiB on Linux


def see_this_environment(python: Path) -> None:
    """Let the peer venv import this interpreter's packages (torch above all), after its own.

    ``venv --system-site-packages`` would expose the *base* interpreter's packages, not those of a
    virtualenv this project is installed in (the usual case), so torch would be missing there. A
    ``.pth`` file in the peer venv's site-packages appends this interpreter's package folders.
    """
    import site

    folders = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    found = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(found.stdout.strip(), "seq2seq-parent.pth").write_text("".join(f"{p}\n" for p in folders))


def install() -> Path:
    """OpenNMT-py 3.5.1 and its dependencies, torch excepted, in ``outputs/peers/venv``."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print("installing OpenNMT-py 3.5.1 into", VENV, flush=True)
        log = OUT / "install.log"
        run([sys.executable, "-m", "venv", str(VENV)], log)
        see_this_environment(python)
        run([str(python), "-m", "pip", "install", "-q", "--no-deps", "OpenNMT-py==3.5.1"], log)
        run([str(python), "-m", "pip", "install", "-q", *DEPS.split()], log)
    return VENV / "bin"


def prepare() -> Path:
    """Bench's peer-config training and validation pairs, and test2016's sources, as pieces.

    The corpus goes through this project's own pipeline (``prepare_data``: the same filtered pairs
    and the same joint BPE 8k, cut into per-side vocabularies), so both systems train on the same
    token sequences.
    """
    from bench import PEER

    from seq2seq.data.corpora import load_split
    from seq2seq.data.prepare import prepare_data
    from seq2seq.data.vocab import Vocab
    from seq2seq.overrides import compose

    config = compose(PEER)
    vocab_state, train, valid = prepare_data(config)
    vocab = Vocab.from_state_dict(vocab_state)
    test = vocab.encode_src(list(load_split(config.data, "test_2016_flickr")["src"]))
    data = OUT / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {
        "train.src": [vocab.src_pieces(s) for s in train.src_ids],
        "train.tgt": [vocab.tgt_pieces(t) for t in train.tgt_ids],
        "val.src": [vocab.src_pieces(s) for s in valid.src_ids],
        "val.tgt": [vocab.tgt_pieces(t) for t in valid.tgt_ids],
        "test.src": [vocab.src_pieces(s) for s in test],
    }
    for name, lines in files.items():
        (data / name).write_text("\n".join(" ".join(pieces) for pieces in lines) + "\n")
    return data


def data_config(data: Path) -> str:
    return (
        f"src_vocab: {data}/vocab.src\ntgt_vocab: {data}/vocab.tgt\nsave_data: {data}/onmt\noverwrite: true\n"
        f"data:\n  corpus_1:\n    path_src: {data}/train.src\n    path_tgt: {data}/train.tgt\n"
        f"  valid:\n    path_src: {data}/val.src\n    path_tgt: {data}/val.tgt\n"
    )


def train(bin_dir: Path, data: Path, attention: str, steps: int) -> dict:
    """Train for ``steps`` updates; OpenNMT-py's tgt tok/s per report, and the peak RSS.

    ``attention`` is the LSTM model's (``mlp``, ``general``), or ``transformer`` for the Transformer."""
    name = f"{attention}_{steps}"
    config = OUT / f"{name}.yaml"
    model = RUN + (TRANSFORMER if attention == "transformer" else MODEL + f"global_attention: {attention}\n")
    config.write_text(data_config(data) + model + f"train_steps: {steps}\nsave_model: {OUT}/{name}\n")
    log, peak = run([str(bin_dir / "onmt_train"), "-config", str(config)], OUT / f"{name}.log")
    rates = [int(m) for m in re.findall(r"\d+/\s*(\d+) tok/s", log)]  # "src/tgt tok/s" per report
    if len(rates) < 2:
        sys.exit(f"no throughput reports in {OUT / name}.log")
    return {
        "tgt_tok_per_s": statistics.median(rates[1:]),  # the first report includes start-up
        "reports": rates,
        "peak_rss_mb": peak,
        "checkpoint": str(OUT / f"{name}_step_{steps}.pt"),
    }


def translate(bin_dir: Path, data: Path, checkpoint: str, beam: int, batch_size: int) -> dict:
    out = OUT / f"hyp.{Path(checkpoint).stem}.beam{beam}.txt"
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # its checkpoints hold argparse objects
    command = [str(bin_dir / "onmt_translate"), "-model", checkpoint, "-src", str(data / "test.src")]
    command += ["-output", str(out), "-beam_size", str(beam), "-batch_size", str(batch_size), "-report_time"]
    log, _ = run(command, OUT / f"translate.{Path(checkpoint).stem}.beam{beam}.log", env)
    # reported to 0.1 s: about +-3 % of greedy decoding's 1.6-1.8 s here
    seconds = float(re.search(r"Total translation time \(s\): ([\d.]+)", log).group(1))
    lines = out.read_text().splitlines()
    return {
        "sent_per_s": len(lines) / seconds,
        "mean_output_len": sum(len(line.split()) + 1 for line in lines) / len(lines),  # pieces + EOS
    }


def print_figures(figures: dict) -> None:
    """The figures of ``opennmt.json``, a line each."""
    t, d = figures["train"], figures["decode"]
    gflops = figures["matmul_gflops"]
    bf16_text = "n/a (unsupported)" if gflops["bf16"] is None else f"{gflops['bf16']:.0f}"
    print(f"{figures['machine']}: matmul GFLOP/s fp32 {gflops['fp32']:.0f}, bf16 {bf16_text}")
    for name, f in t.items():
        print(f"OpenNMT-py {name:9s} {f['tgt_tok_per_s']:7,.0f} tgt tok/s   peak RSS {f['peak_rss_mb']:,.0f} MB")
    print(
        f"decode test_2016_flickr: greedy {d['greedy']['sent_per_s']:,.0f} sent/s, "
        f"beam 5 {d['beam5']['sent_per_s']:,.0f} sent/s; mean output {d['greedy']['mean_output_len']:.1f} tokens"
    )
    tg = d["transformer_greedy"]
    print(f"transformer greedy {tg['sent_per_s']:,.0f} sent/s; mean output {tg['mean_output_len']:.1f} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=["transformer"],
        help="measure the Transformer again, keeping the LSTM figures of opennmt.json",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    bin_dir = install()
    try:
        data = prepare()
    except Seq2SeqError as err:  # a missing or unusable corpus: one line, as the product's commands say it
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    vocab = OUT / "vocab.yaml"
    vocab.write_text(data_config(data))
    run([str(bin_dir / "onmt_build_vocab"), "-config", str(vocab), "-n_sample", "-1"], OUT / "vocab.log")
    import torch
    from bench_train import matmul_gflops

    from seq2seq.hardware import bf16_lstm_runs, describe_device

    cpu = torch.device("cpu")
    bf16 = bf16_lstm_runs(cpu)  # elsewhere the bf16 product is emulated and takes minutes
    figures = {
        "machine": describe_device(cpu),
        "matmul_gflops": {
            "fp32": matmul_gflops(torch.float32),
            "bf16": matmul_gflops(torch.bfloat16) if bf16 else None,
        },
    }
    if args.only:  # the LSTM figures of an earlier run, the Transformer's (and the host's speed) measured now
        earlier = OUT / "opennmt.json"
        if not earlier.exists():
            sys.exit(
                f"error: --only {args.only} keeps the other figures of {earlier}, which does not exist; run it whole"
            )
        kept = json.loads(earlier.read_text())
        figures["train"], figures["decode"] = kept["train"], kept["decode"]
        figures["transformer_measured_alone"] = True
        figures["train"]["transformer"] = train(bin_dir, data, "transformer", 1000)
    else:
        figures["train"] = {
            "additive": train(bin_dir, data, "mlp", 1000),
            "general": train(bin_dir, data, "general", 400),
            "transformer": train(bin_dir, data, "transformer", 1000),
        }
        checkpoint = figures["train"]["additive"]["checkpoint"]
        figures["decode"] = {"greedy": translate(bin_dir, data, checkpoint, 1, 128)}
        figures["decode"]["beam5"] = translate(bin_dir, data, checkpoint, 5, 64)
    transformer = figures["train"]["transformer"]["checkpoint"]
    figures["decode"]["transformer_greedy"] = translate(bin_dir, data, transformer, 1, 128)
    (OUT / "opennmt.json").write_text(json.dumps(figures, indent=2))
    print_figures(figures)
    print(f"wrote {OUT / 'opennmt.json'} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
