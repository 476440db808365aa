"""The trainable classifiers: is a message spam, and which category does it belong to.

``features`` turns a parsed message into the three texts the models read; ``model`` trains,
calibrates and applies them; ``persist`` saves them with skops and swaps them atomically;
``loader`` hands the pipeline the current models; ``labels`` keeps what agents taught;
``commands`` is the ``train``, ``evaluate`` and ``classify`` command line.
"""
