"""Train a translation model: ``python train.py attention=bahdanau`` (any Hydra override)."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seq2seq.config import Config
from seq2seq.errors import Seq2SeqError
from seq2seq.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = Config.from_dict(OmegaConf.to_container(cfg, resolve=True))
        result = train(config, HydraConfig.get().runtime.output_dir, list(HydraConfig.get().overrides.task))
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if result["stop"].startswith("signal"):
        sys.exit(130)


if __name__ == "__main__":
    main()
