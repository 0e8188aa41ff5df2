"""The Textual monitor (`python -m runner monitor`): nodes, instances, a live journal, and actions."""
