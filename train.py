"""Train a translation model: ``python train.py attention=bahdanau`` (any Hydra override)."""

import contextlib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seq2seq.config import Config
from seq2seq.errors import Seq2SeqError
from seq2seq.overrides import check_overrides, register
from seq2seq.training import train
from seq2seq.training.signals import pass_on


class NotOnATerminal(logging.Filter):
    """Progress lines go to stderr only off a terminal; on one, the progress bar shows the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "progress_line", False) and sys.stderr.isatty())


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(NotOnATerminal())
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        config = Config.from_dict(OmegaConf.to_container(cfg, resolve=True))
        result = train(config, out_dir, list(HydraConfig.get().overrides.task))
    except Seq2SeqError as error:
        with contextlib.suppress(OSError):
            out_dir.rmdir()  # Hydra made it; a run refused before writing anything leaves nothing behind
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if result["stop"].startswith("signal"):
        pass_on(result["stop"])  # submitit's warning signal: last.pt is saved, now submitit requeues the job
        sys.exit(130)


if __name__ == "__main__":
    register()
    try:
        check_overrides(sys.argv[1:])  # a typo is one line and exit 2, before Hydra's longer answer
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
