"""The math of each operator family: ``<op>_reference`` (plain per-step loops written from the
paper's equations), ``<op>_chunk`` / ``<op>_scan`` / ``<op>_parallel`` (fast forms) and
``<op>_recurrent`` (one decoding step). Functions only; no modules, no parameters."""
