"""The experiment kit: data preparation, evaluation, reports and the ``python -m spacy_dallmi``
command line. Kept apart from the library: a pipeline that uses ``dallmi_textcat`` never
imports it. Its extra dependencies: ``pip install "spacy-dallmi[project]"``.

- data: :mod:`.readers` (users' files, every dropped row counted), :mod:`.datasets` (the
  built-in pairs), :mod:`.protocol` (label sets, splits, caps, label hiding), :mod:`.corpus`
  (the DocBins and ``stats.json``) and :mod:`.summary` (what was dropped or changed, warnings);
- results: :mod:`.methods` (the compared methods), :mod:`.evaluate` (metrics files),
  :mod:`.runs` and :mod:`.report` (the Markdown report and figures), :mod:`.thresholds`;
- runs: :mod:`.commands` (the app and its commands), :mod:`.study` (the ``study`` commands the
  project runs, which name run folders and skip finished work), :mod:`.grid` (tuning and
  ablations), :mod:`.run_inputs` (what a training run was made from) and :mod:`.cli`.
"""

#: The one line a missing optional dependency of the kit is reported with.
INSTALL_HINT = 'pip install "spacy-dallmi[project]"'
