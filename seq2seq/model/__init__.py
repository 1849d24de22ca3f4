"""The models: the LSTM :class:`Seq2Seq` (attention scores, encoder, three decoder wirings) and the :class:`Transformer`.

The formulas live in :mod:`~seq2seq.model.attention`, :mod:`~seq2seq.model.encoder` and
:mod:`~seq2seq.model.decoder`; :mod:`~seq2seq.model.lstm` holds the CPU fast paths they run on.
"""

from seq2seq.model.seq2seq import Seq2Seq, build_model, describe
from seq2seq.model.transformer import Transformer

__all__ = ["Seq2Seq", "Transformer", "build_model", "describe"]
