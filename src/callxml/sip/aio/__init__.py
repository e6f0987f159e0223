"""asyncio skin of the SIP stack: transports (UDP/TCP/TLS), TLS, target resolution, user agent.

Everything that touches sockets, ``ssl`` or the clock for SIP lives here; the protocol logic
(messages, transactions, dialogs) stays sans-IO in :mod:`callxml.sip`. Import the submodules
directly (``callxml.sip.aio.useragent``...); this package re-exports nothing so importing it
stays cheap.
"""
