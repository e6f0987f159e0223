"""callxml: a call-control engine driven by TwiML-like XML.

Developers return XML from their web apps; callxml fetches it by webhook, interprets each verb and
drives real phone calls over SIP and RTP (TLS and SRTP for ``;secure=true`` targets).
"""

from callxml.errors import CallXmlError

__all__ = ["CallXmlError", "__version__"]
__version__ = "0.1.0"
