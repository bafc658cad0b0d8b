"""An optional second opinion on mail the rules pass: a sentence-embedding model.

The rules of :mod:`postveil.detection` find about half of the sensitive messages in
mail from writers they were not written for (docs/detection-evaluation.md). A small
pretrained model (all-MiniLM-L6-v2) turns a message's text into a vector, and a
logistic regression trained on the labelled sets under tests/detection scores it.
The model needs PyTorch and about 0.6 GB of memory, and tens of milliseconds of CPU per
message, so it runs in its own daemon, postveil-classifierd, which the milter and
``postveil scan`` ask over a unix socket (:mod:`postveil.classifier.client`). It is off
unless the ``classifier`` section enables it.
"""
