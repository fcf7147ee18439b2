"""The meeting domain: meetings, roster, roles, lobby, live room state. Pure Python."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
