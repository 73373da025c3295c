"""The experiment kit: data preparation, evaluation, reports and the ``python -m spacy_dallmi`` CLI.

Kept apart from the library on purpose. A pipeline that uses ``dallmi_textcat`` needs none of
this at run time, and ``import spacy_dallmi`` or ``spacy.load`` never import it. Install its
extra dependencies (matplotlib for the figures) with ``pip install "spacy-dallmi[project]"``.

- :mod:`.readers`: users' CSV/TSV/JSONL files, with every dropped row counted by reason;
- :mod:`.datasets`: the built-in layouts ``emotions`` and ``pubmed``;
- :mod:`.protocol`: label-set alignment, train/test splits, caps and label hiding;
- :mod:`.corpus` and :mod:`.prepare`: writing the DocBins and ``stats.json``;
- :mod:`.evaluate`, :mod:`.report`, :mod:`.figures`: metrics files and the Markdown report;
- :mod:`.cli`: the command line.
"""

#: The one line a missing optional dependency of the kit is reported with.
INSTALL_HINT = 'pip install "spacy-dallmi[project]"'
