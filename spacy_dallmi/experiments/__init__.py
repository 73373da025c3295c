"""The experiment kit: data preparation, evaluation, reports and the ``python -m spacy_dallmi`` CLI.

Kept apart from the library on purpose. A pipeline that uses ``dallmi_textcat`` needs none of
this at run time, and ``import spacy_dallmi`` or ``spacy.load`` never import it. Install its
extra dependencies (matplotlib for the figures) with ``pip install "spacy-dallmi[project]"``.

- :mod:`.readers` and :mod:`.cells`: users' CSV/TSV/JSONL files, every dropped row counted;
- :mod:`.datasets`: the built-in layouts ``emotions`` and ``pubmed``;
- :mod:`.protocol`: label-set alignment, train/test splits, caps and label hiding;
- :mod:`.prepare`, :mod:`.corpus` and :mod:`.summary`: the DocBins, ``stats.json`` and the
  printed account of what was dropped or changed;
- :mod:`.methods`, :mod:`.evaluate`, :mod:`.runs`, :mod:`.report`, :mod:`.figures`: the
  compared methods, metrics files (selected and last model, calibration) and the Markdown
  report;
- :mod:`.thresholds`: per-label decision thresholds fitted on the validation slice;
- :mod:`.study` (``study check``, ``adapt``, ``baselines``, ``table``, ``tune``,
  ``ablations``: the commands ``project.yml`` runs, the one place that names run folders and
  skips finished work), with :mod:`.grid` (the tune grid and the ablations) and
  :mod:`.run_inputs` (what a training run was made from);
- :mod:`.data_commands` (``prepare``, ``prepare-files``, ``evaluate``, ``report``) and
  :mod:`.model_commands` (``train``, ``find-thresholds``): the command line, its commands
  registered on the app of :mod:`.commands` and assembled by :mod:`.cli`.
"""

#: The one line a missing optional dependency of the kit is reported with.
INSTALL_HINT = 'pip install "spacy-dallmi[project]"'
