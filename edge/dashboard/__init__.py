"""The live bedside page: ``biomoe monitor --dashboard [HOST:]PORT`` and ``biomoe dashboard --db FILE``.

A nurse at the bedside reads the current pain level, the last hour, signal
quality and the last window's signals on a tablet or a small screen, with no
network beyond the hub. ``access`` (bind address, token), ``alerts``
(persisting High Pain), ``feed`` (the page's state and its event stream),
``server`` (stdlib HTTP + Server-Sent Events), ``live`` (beside the running
monitor), ``viewer`` (``biomoe dashboard``: a database, after the fact or
followed); ``static/`` holds the page and the vendored uPlot.
"""
