"""The Textual TUI (talks to nodes only through their HTTP API)."""
