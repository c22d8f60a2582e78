"""The report's sections, one module each, each a ``section(...)`` returning a
:class:`dcign_eval.report.page.Section` (template values, tables, figures):

1. :mod:`.cards` -- model cards, training curves, data sets;
2. :mod:`.reconstructions` -- held-out faces reconstructed, and their lineup;
3. :mod:`.traversals` -- traversal movies and re-rendering fidelity;
4. :mod:`.scatter` -- inferred versus true angles;
5. :mod:`.metrics` -- disentanglement metrics beside the reference codes;
6. :mod:`.recognition` -- invariant face recognition.
"""
