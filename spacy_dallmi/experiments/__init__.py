"""The experiment kit (``python -m spacy_dallmi``), apart from the library: a pipeline that
uses ``dallmi_textcat`` never imports it. Data: :mod:`.readers`, :mod:`.datasets`,
:mod:`.protocol`, :mod:`.corpus`, :mod:`.summary`; results: :mod:`.methods`, :mod:`.evaluate`,
:mod:`.report`, :mod:`.thresholds`; runs: :mod:`.commands`, :mod:`.study`,
:mod:`.run_inputs`, :mod:`.cli`.
"""

#: The one line a missing optional dependency of the kit is reported with.
INSTALL_HINT = 'pip install "spacy-dallmi[project]"'
