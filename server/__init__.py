"""HTTP, signaling, REST, auth, configuration and the CLI: where the layers meet."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
