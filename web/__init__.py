"""Pages: jinja2 templates, static files, translations (ru, en) and page handlers."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
