"""The relay an aiortc user would write from aiortc's examples, measured as a baseline."""
