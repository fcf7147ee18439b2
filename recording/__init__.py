"""Capture of forwarded tracks, the programme, the recordings catalog."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
