"""The load tool: drives a server over the network like real clients."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
