"""The data: corpora on disk, a run's data prepared in a child process, the vocabulary, batches.

- :mod:`~seq2seq.data.corpora`: load a corpus split through ``datasets`` (a local folder or the hub) and filter it;
- :mod:`~seq2seq.data.prepare`: a run's encoded training and validation data, built in a child
  process so that the trainer does not carry the corpus tools' memory;
- :mod:`~seq2seq.data.vocab`: SentencePiece, the special ids, encoding and decoding;
- :mod:`~seq2seq.data.batching`: token-budgeted, length-sorted batches;
- :mod:`~seq2seq.data.longinputs`: long inputs joined from consecutive or random sentences.
"""
