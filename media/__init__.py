"""The SFU: aiortc peer connections and passthrough forwarding. Knows no meetings."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
