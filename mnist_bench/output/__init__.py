"""What a person reads: console tables and a study's HTML report.

- ``console``: rich tables and lines for the CLI (a Console is passed in)
- ``methods``: the tables and lines of ``mnist-bench methods``
- ``speedrun``: the lines and tables of ``mnist-bench speedrun`` and ``recipes`` (no pandas)
- ``report``: a study's HTML page, and studies compared
- ``report_figures``: the report's PNG figures
- ``report_plots``: the report's interactive figures

May import every library folder but ``cli``.
"""
