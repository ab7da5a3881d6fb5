"""The Textual TUI (talks to nodes only through their HTTP API).

``devstack up`` opens it (``python -m tui --ask-stop``) once the cluster is ready;
``devstack tui`` attaches it to a running cluster. Both start it the same way,
through :func:`tui.__main__.main`; the app is :mod:`tui.app`.
"""

STOP_CLUSTER_EXIT = 3
"""Exit status of ``python -m tui --ask-stop`` when the user asked to stop the cluster."""
