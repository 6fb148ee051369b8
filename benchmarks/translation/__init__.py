"""IWSLT'14 German-English translation: fairseq's recipe, reproduced without fairseq.

fairseq's last release no longer installs on current Python, so the suite rebuilds the
pieces of its standard IWSLT'14 De-En recipe (``examples/translation``):

* :mod:`.corpus`: the text steps of ``prepare-iwslt14.sh`` (tag stripping, Moses
  tokenisation, cleaning, lowercasing, the every-23rd validation split, the test set);
* :mod:`.bpe`: the joint BPE, learned and applied with subword-nmt, the recipe's tool;
* :mod:`.dictionary`: ``fairseq-preprocess``'s dictionaries and binarisation;
* :mod:`.prepare`: the one-time preparation command and its manifest
  (``python -m benchmarks.translation.prepare --data-dir DIR``);
* :mod:`.data`: prepared data, verified against its manifest, and its batches;
* :mod:`.batching`: token-count batches grouped by length, a pure function of (seed, epoch);
* :mod:`.model`: ``transformer_iwslt_de_en`` on PyTorch's fused attention;
* :mod:`.loss`: fairseq's label-smoothed cross-entropy;
* :mod:`.search`: beam search and greedy decoding with cached incremental decoding;
* :mod:`.bleu`: tokenised BLEU (as ``fairseq-generate`` reports it) and sacreBLEU.

docs/translation.md says how to place the archive, prepare it and train.
"""
