"""What the tests share, kept once so that a fix to a helper reaches every test that uses it.

``pyproject.toml`` puts ``tests/`` on ``sys.path`` (``pythonpath``), so this package imports as
``support`` from any test module; ``tests/conftest.py`` registers :mod:`support.fixtures`, so its
fixtures (``sipp``, ``pki``, ``dev_cert``, ``baresip``, ``their_tone``, ``serve``) need no import.
One module per concern:

* :mod:`support.ports` — free loopback ports (UDP, TCP, or both);
* :mod:`support.waiting` — ``until``: poll a condition, bounded, failing with what was awaited;
* :mod:`support.sipp` — the SIPp runner (real SIP peer);
* :mod:`support.baresip` — the baresip softphone harness (real SIP/TLS/SRTP peer);
* :mod:`support.certs` — TLS test certificates (trustme PKI, the development certificate);
* :mod:`support.web` — a real aiohttp server on a free loopback port;
* :mod:`support.engine` — engine configurations, an in-process engine, its webhook app;
* :mod:`support.interpreter` — the fake-clock CallSession harness;
* :mod:`support.fakes` — in-memory call leg, audio source and call log for the runtime;
* :mod:`support.srtp_reference` — a slow, obvious SRTP written from RFC 3711 (a test oracle);
* :mod:`support.fixtures` — the pytest fixtures built on the above.
"""
