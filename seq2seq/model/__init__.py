"""The model: attention scores, the encoder, the three decoder wirings and the :class:`Seq2Seq` module.

The formulas live in :mod:`~seq2seq.model.attention`, :mod:`~seq2seq.model.encoder` and
:mod:`~seq2seq.model.decoder`; :mod:`~seq2seq.model.lstm` holds the CPU fast paths they run on.
"""

from seq2seq.model.seq2seq import Seq2Seq, build_model

__all__ = ["Seq2Seq", "build_model"]
